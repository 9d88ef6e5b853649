/**
 * An example tsgun config file: the common settings, by section, as in docs/settings.md.
 * Values shown are the defaults unless marked otherwise.
 *
 *   npx tsgun -c conf.example.ts examples/express/app:app
 *
 * Flags on the command line override the file: `-w 4`, `-b :9000`, `--log-level debug`.
 */
import { defineConfig } from 'tsgun';

export default defineConfig({
  // ---- Server socket -------------------------------------------------------------------
  // Repeat for several: 'HOST:PORT', ':PORT', '[::1]:PORT', 'unix:/run/app.sock', 'fd://3'.
  bind: ['127.0.0.1:8000'],
  // Pending connections per socket (capped by net.core.somaxconn).
  backlog: 2048,

  // ---- Worker processes ----------------------------------------------------------------
  // Not the default (1). One or two per core is typical; WEB_CONCURRENCY sets it too.
  workers: 2,
  // 'http', or MODULE:CLASS for your own worker class (docs/workers.md).
  worker_class: 'http',
  // Seconds without a heartbeat before a worker is killed (its stack logged) and replaced; 0 disables.
  timeout: 30,
  // Seconds a worker may take to boot: import the app, run its factory, post_worker_init.
  boot_timeout: 30,
  // Seconds a stopping worker has to finish its in-flight requests (TERM).
  graceful_timeout: 30,
  // Seconds an idle keep-alive connection stays open; set it above your proxy's idle timeout.
  keepalive: 5,
  // Replace a worker after this many requests (plus a random 0..jitter); 0 disables.
  max_requests: 0,
  max_requests_jitter: 0,
  // Replace a worker whose RSS grows past this many bytes, for example 512 * 2 ** 20
  // (--max-worker-memory 512MiB on the command line); null for no limit.
  max_worker_memory: null,

  // ---- Server mechanics ----------------------------------------------------------------
  // Directory to load the app from (default: the current one).
  chdir: null,
  // Not the default (none): environment variables for the app.
  raw_env: ['NODE_ENV=production'],
  // A dotenv file (KEY=VALUE lines) for the app, for example '.env'; raw_env wins.
  env_file: null,
  // Run workers as this user and group (start as root; the master binds first, so ports
  // below 1024 work).
  user: null,
  group: null,
  // File mode mask, also the mode of unix socket files, for example 0o007.
  umask: null,
  // Write the master's pid here, for example '/run/tsgun/tsgun.pid'.
  pidfile: null,
  // Name in process titles, `tsgun: master [NAME]` (default: the APP argument).
  proc_name: null,
  // App shape: 'auto' detects Express, Koa, Fastify, Hono and fetch handlers; 'node' or 'fetch' forces one.
  interface: 'auto',
  // true: APP names a factory to call (same as writing MODULE:ATTR()).
  factory: false,
  // Unix socket for `tsgun status | reload | scale N | stop` (default: next to the pidfile,
  // else in $XDG_RUNTIME_DIR/tsgun or /tmp/tsgun-UID).
  control_socket: null,
  // Prometheus metrics at /metrics on this address, for example '127.0.0.1:9100'; null for off.
  metrics_bind: null,

  // ---- Server mechanics: development --------------------------------------------------
  // Reload the workers when the app's files change (set it with --reload, not in production).
  reload: false,
  // Directories to watch (default: the app module's directory).
  reload_dirs: [],
  // More files to watch, such as this config file.
  reload_extra_files: [],

  // ---- Logging -------------------------------------------------------------------------
  // 'trace' | 'debug' | 'info' | 'warning' | 'error' | 'critical'
  loglevel: 'info',
  // 'pretty' text, 'json' lines, or 'auto' (pretty on a terminal, JSON otherwise).
  log_format: 'auto',
  // Error log file; '-' is stderr.
  errorlog: '-',
  // Not the default (off): one line per request on stdout ('-'), or a file.
  accesslog: '-',
  // Gunicorn's atoms, or 'json'.
  access_log_format: '%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s"',

  // ---- HTTP ----------------------------------------------------------------------------
  // Request limits: longer request lines get 414, more or longer header fields get 431.
  limit_request_line: 4094,
  limit_request_fields: 100,
  limit_request_field_size: 8190,
  // Seconds a client has to send its headers (slowloris guard) and its whole request.
  headers_timeout: 30,
  request_timeout: 300,
  // Most open connections per worker; 0 for no limit.
  worker_connections: 1000,
  // Most requests in flight per worker before answering 503; 0 for no limit.
  limit_concurrency: 0,

  // ---- Security ------------------------------------------------------------------------
  // Peers trusted to set the client address and scheme (walked from the right, past trusted hops).
  forwarded_allow_ips: ['127.0.0.1', '::1'],
  // The one header family they write it in: 'x-forwarded' (X-Forwarded-For/-Proto) or 'forwarded' (RFC 7239).
  forwarded_headers: 'x-forwarded',
  // Accept a PROXY protocol header from proxy_allow_ips: 'off' | 'v1' | 'v2' | 'auto'.
  proxy_protocol: 'off',

  // ---- TLS -----------------------------------------------------------------------------
  // PEM certificate (with its chain) and key: set both to serve HTTPS.
  certfile: null,
  keyfile: null,

  // ---- Server hooks --------------------------------------------------------------------
  // Master side: once the sockets are bound, before the first workers start.
  when_ready(server) {
    server.log.info(`sockets bound for ${server.app}; starting ${server.settings.workers} workers`);
  },
  // Worker side (each worker imports this file for it): after every response.
  post_request(worker, req, res, durationMs) {
    if (durationMs > 1000)
      worker.log.warn(`slow request: ${req.method} ${req.url} -> ${res.statusCode} in ${Math.round(durationMs)} ms`);
  },
});
