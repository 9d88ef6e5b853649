/**
 * The settings registry: one declaration per setting. It drives the command-line
 * options, the accepted config-file keys, environment variables, validation,
 * `--print-config` and the generated `docs/settings.md`. A default is written here once.
 */
import { checkPeerList } from '../peers.js';
import { parseBind } from './bind.js';
import {
  bool,
  choice,
  hook,
  type HookFunction,
  int,
  optionalString,
  seconds,
  size,
  string,
  strings,
  umask,
  ValueProblem,
  type ValueType,
} from './types.js';

export const SECTIONS = [
  'Config',
  'Server socket',
  'Worker processes',
  'Server mechanics',
  'Logging',
  'HTTP',
  'Security',
  'TLS',
  'Server hooks',
] as const;
export type Section = (typeof SECTIONS)[number];

export interface Setting<T> {
  readonly section: Section;
  readonly type: ValueType<T>;
  readonly default: T;
  /** Command-line flags, short first: `['-w', '--workers']`. None for file-only settings. */
  readonly cli?: readonly string[];
  /** An environment variable that sets this setting (above the config file, below the command line). */
  readonly env?: string;
  /** Turns the env var's raw value into a value, when it is not the setting's own form. */
  readonly fromEnv?: (raw: string) => T;
  /** Only on the command line (for example `config` itself). */
  readonly cliOnly?: boolean;
  /** One line, for `--help`. */
  readonly short: string;
  /** More, for docs/settings.md. */
  readonly doc?: string;
  /** How the default reads in docs, when the plain value would mislead. */
  readonly defaultDoc?: string;
}

function setting<T>(s: Setting<T>): Setting<T> {
  return s;
}

/**
 * A hook, typed loosely here so that the registry does not depend on the objects hooks receive
 * (hooks.ts, which reads `Settings`); `TsgunConfig` (define.ts) gives each its signature.
 */
function hookSetting(runsIn: 'master' | 'worker', signature: string, short: string): Setting<HookFunction | null> {
  return {
    section: 'Server hooks',
    type: hook<HookFunction>(),
    default: null,
    short,
    doc: `Runs in the ${runsIn}. Signature: \`${signature}\`. May be async (awaited) unless noted.`,
  };
}

function checkBind(item: string): void {
  try {
    parseBind(item);
  } catch (err) {
    throw new ValueProblem((err as Error).message);
  }
}

function checkPeers(item: string): void {
  const problem = checkPeerList([item]);
  if (problem) throw new ValueProblem(problem);
}

/** A comma-separated list in one string (`127.0.0.1,::1`), as Gunicorn writes it, or a list. */
function peers(placeholder: string): ValueType<string[]> {
  const base = strings(placeholder, checkPeers);
  const split = (items: string[]): string[] =>
    items
      .flatMap((i) => i.split(','))
      .map((i) => i.trim())
      .filter(Boolean);
  return {
    ...base,
    repeatable: false,
    fromString: (raw) => split(base.fromString(raw)),
    fromConfig: (raw) => split(base.fromConfig(raw)),
    show: (v) => JSON.stringify(v.join(',')),
  };
}

function checkHeader(item: string): void {
  if (!/^[!#$%&'*+.^_`|~0-9A-Za-z-]+:.*$/.test(item))
    throw new ValueProblem(`expected Name:Value, got ${JSON.stringify(item)}`);
}

function checkEnvPair(item: string): void {
  if (!/^[A-Za-z_][A-Za-z0-9_]*=/.test(item)) throw new ValueProblem(`expected KEY=VALUE, got ${JSON.stringify(item)}`);
}

function checkWorkerClass(item: string): string {
  if (item === 'http' || item === 'http2' || /^.+:[A-Za-z_$][\w$]*$/.test(item)) return item;
  throw new ValueProblem(
    `expected "http" or MODULE:CLASS (for example ./my-worker.ts:MyWorker), got ${JSON.stringify(item)}`,
  );
}

const workerClass: ValueType<string> = {
  ...string('<class>'),
  expected: '"http", "http2" or MODULE:CLASS',
  fromString: checkWorkerClass,
  fromConfig: (raw) => (typeof raw === 'string' ? checkWorkerClass(raw) : string().fromConfig(raw)),
};

function checkMetricsBind(item: string): string {
  checkBind(item);
  if (item.trim().startsWith('fd://'))
    throw new ValueProblem(
      `expected HOST:PORT or unix:PATH (the master listens on it itself), got ${JSON.stringify(item)}`,
    );
  return item;
}

/** An optional address the master itself listens on: a bind address other than fd://N. */
const metricsAddress: ValueType<string | null> = {
  ...optionalString('<address>'),
  expected: 'HOST:PORT, unix:PATH or null',
  fromString: (raw) => (raw === '' ? null : checkMetricsBind(raw)),
  fromConfig: (raw) => {
    const value = optionalString().fromConfig(raw);
    return value === null ? null : checkMetricsBind(value);
  },
};

export const SETTINGS = {
  // Config
  config: setting({
    section: 'Config',
    type: optionalString('<file>'),
    default: null,
    cli: ['-c', '--config'],
    cliOnly: true,
    short: 'Config file (.ts .mts .js .mjs .cjs .yaml .yml .json).',
    doc: 'When absent, `./tsgun.conf.ts`, `.mts`, `.js`, `.mjs`, `.cjs`, `.yaml`, `.yml` or `.json` is used if present. Script files export the config object as `default` (type it with `defineConfig` from `tsgun`); YAML and JSON files hold the same keys as data.',
  }),
  check_config: setting({
    section: 'Config',
    type: bool,
    default: false,
    cli: ['--check-config'],
    cliOnly: true,
    short: 'Load the config and the app, report, and exit 0 (good) or 1 (bad).',
  }),
  print_config: setting({
    section: 'Config',
    type: bool,
    default: false,
    cli: ['--print-config'],
    cliOnly: true,
    short: 'Print every setting with its value and where the value came from, then exit.',
  }),

  // Server socket
  bind: setting({
    section: 'Server socket',
    type: strings('<address>', checkBind),
    default: ['127.0.0.1:8000'],
    cli: ['-b', '--bind'],
    env: 'PORT',
    fromEnv: (port) => [`0.0.0.0:${port}`],
    short: 'Address to listen on; repeat for several.',
    defaultDoc: '`["127.0.0.1:8000"]`, or `["0.0.0.0:$PORT"]` when `PORT` is set',
    doc: 'Forms: `HOST:PORT`, `:PORT` (all interfaces), `[IPV6]:PORT`, `tcp://HOST:PORT`, `unix:PATH`, `fd://N`. Port 0 binds an ephemeral port; the `Listening at:` line shows the real one. Ignored when systemd passes sockets (`LISTEN_FDS`).',
  }),
  backlog: setting({
    section: 'Server socket',
    type: int(1, 65535),
    default: 2048,
    cli: ['--backlog'],
    short: 'Maximum number of pending connections per socket.',
    doc: 'The kernel caps it at `net.core.somaxconn`.',
  }),

  reuse_port: setting({
    section: 'Server socket',
    type: bool,
    default: false,
    cli: ['--reuse-port'],
    short:
      'Give each worker its own SO_REUSEPORT socket on TCP binds, so the kernel spreads connections evenly (Node >= 22.12; ignored with a warning before).',
    doc: "Without it, all workers accept on the one socket the master bound. With it, connections queued on a worker's own socket when that worker stops are reset unless the kernel migrates them (Linux: `sysctl net.ipv4.tcp_migrate_req=1`); reloads under load are only free of failed requests with that set.",
  }),

  // Worker processes
  workers: setting({
    section: 'Worker processes',
    type: int(1, 1024),
    default: 1,
    cli: ['-w', '--workers'],
    env: 'WEB_CONCURRENCY',
    short: 'Number of worker processes.',
    doc: 'Each worker is a Node.js process running the app with its own event loop. One or two per core is typical.',
  }),
  worker_class: setting({
    section: 'Worker processes',
    type: workerClass,
    default: 'http',
    cli: ['-k', '--worker-class'],
    short: 'Worker implementation: `http`, `http2` (HTTP/2 over TLS, HTTP/1.1 by ALPN), or MODULE:CLASS for your own.',
    doc: 'A custom class is loaded in each worker from MODULE (resolved like the app) and must implement the `TsgunWorker` interface exported by `tsgun`: `new MyWorker(context)`, `start()`, `stop(graceful)`. See docs/workers.md.',
  }),
  timeout: setting({
    section: 'Worker processes',
    type: seconds(0),
    default: 30,
    cli: ['-t', '--timeout'],
    short: 'Seconds a worker may go without a heartbeat before it is killed and replaced; 0 disables.',
    doc: "Workers send a heartbeat from their event loop. A worker whose event loop is blocked for longer than this is killed and replaced. Before it is killed, the master logs `WORKER TIMEOUT` with the JavaScript stack where it was blocked, its positions mapped through the scripts' source maps: the lines of a TypeScript app's `.ts` files (compiled by tsx), or of the sources of a built app that ships `.map` files (or inline maps).",
  }),
  boot_timeout: setting({
    section: 'Worker processes',
    type: seconds(0),
    default: 30,
    cli: ['--boot-timeout'],
    short:
      'Seconds a worker may take to boot (import the app, run its factory, Fastify ready(), post_worker_init); 0 disables.',
    doc: 'Separate from `timeout`, so an app that is slow to start needs no inflated `timeout`. A worker that does not boot in time is killed, and the log says where its JavaScript was stuck if it was blocked (a busy loop at import), or that it was waiting; at first start that stops tsgun with exit status 3.',
  }),
  max_worker_memory: setting({
    section: 'Worker processes',
    type: size(),
    default: null,
    cli: ['--max-worker-memory'],
    short: 'Replace a worker whose resident memory (RSS) exceeds this, such as 512MB; unset for no limit.',
    doc: 'Checked every `stats_interval` seconds. The replacement starts first; the old worker drains once it is ready, so no request fails.',
  }),
  stats_interval: setting({
    section: 'Worker processes',
    type: seconds(0.1),
    default: 5,
    cli: ['--stats-interval'],
    short: "Seconds between samples of every worker's CPU and memory (from /proc on Linux).",
  }),
  graceful_timeout: setting({
    section: 'Worker processes',
    type: seconds(0),
    default: 30,
    cli: ['--graceful-timeout'],
    short: "Seconds a stopping worker has to finish its in-flight requests and run the app's close().",
    doc: 'At the deadline the worker ends what is left itself (streaming responses get their last chunk, WebSockets a close frame) and exits; the master kills a worker still running 2 seconds later. See docs/realtime.md.',
  }),
  keepalive: setting({
    section: 'Worker processes',
    type: seconds(0),
    default: 5,
    cli: ['--keep-alive'],
    short: 'Seconds an idle keep-alive connection is kept open; 0 disables keep-alive.',
    doc: "Behind a proxy that reuses upstream connections (nginx `keepalive`), set this above the proxy's idle timeout.",
  }),

  max_requests: setting({
    section: 'Worker processes',
    type: int(0),
    default: 0,
    cli: ['--max-requests'],
    short: 'Replace a worker after it has served this many requests; 0 disables.',
    doc: 'The replacement is started first and the old worker drains only once the new one is ready, so no request fails. Useful against slow leaks.',
  }),
  reload_batch: setting({
    section: 'Worker processes',
    type: int(0),
    default: 0,
    cli: ['--reload-batch'],
    short: 'How many new workers boot at once during a reload; 0 means a quarter of `workers`, at least 1.',
    doc: 'Old workers keep serving and each retires only once a new one is ready, so a larger batch reloads a large server faster at the cost of more CPU spent booting at once. max_requests replacements stay one at a time. See docs/reload.md.',
  }),
  max_requests_jitter: setting({
    section: 'Worker processes',
    type: int(0),
    default: 0,
    cli: ['--max-requests-jitter'],
    short: "Add a random 0..N to each worker's max_requests, so workers are not all replaced at once.",
  }),
  balance_connections: setting({
    section: 'Worker processes',
    type: bool,
    default: true,
    cli: ['--no-balance-connections'],
    short: 'Keep keep-alive connections spread evenly over the workers (--no-balance-connections turns it off).',
    doc: "Workers accept from one shared socket, and the kernel hands a burst of new connections to whichever worker wakes first: with keep-alive clients (a load balancer's connection pool, a browser) one worker can end up with most of the connections for as long as they last. The master compares the workers' connection counts; a worker holding more than its share (by over 10 %) answers that many of its next requests with `Connection: close`, and those clients reconnect, most likely to a less busy worker. No request fails: a connection closes only after a complete response that said it would. It waits while workers are being replaced (a reload, TTIN/TTOU, max-requests), when connections move anyway. HTTP/1.1 only.",
  }),

  // Server mechanics
  chdir: setting({
    section: 'Server mechanics',
    type: optionalString('<dir>'),
    default: null,
    cli: ['--chdir'],
    short: 'Change to this directory before loading the app.',
    defaultDoc: 'the current directory',
  }),
  raw_env: setting({
    section: 'Server mechanics',
    type: strings('<KEY=VALUE>', checkEnvPair),
    default: [],
    cli: ['-e', '--env'],
    short: 'Set an environment variable for the app; repeat for several.',
  }),
  env_file: setting({
    section: 'Server mechanics',
    type: optionalString('<file>'),
    default: null,
    cli: ['--env-file'],
    short: 'Load environment variables for the app from a dotenv file (KEY=VALUE lines); -e values win.',
  }),
  user: setting({
    section: 'Server mechanics',
    type: optionalString('<user>'),
    default: null,
    cli: ['-u', '--user'],
    short:
      'Run workers as this user (name or id). The master binds first, so ports below 1024 work when started as root.',
  }),
  group: setting({
    section: 'Server mechanics',
    type: optionalString('<group>'),
    default: null,
    cli: ['-g', '--group'],
    short: 'Run workers with this group (name or id).',
    defaultDoc: "the user's primary group",
  }),
  umask: setting({
    section: 'Server mechanics',
    type: umask(),
    default: null,
    cli: ['-m', '--umask'],
    short: 'File mode mask for the master and workers; also sets the mode of unix socket files (007 gives srwxrwx---).',
    defaultDoc: 'inherited',
  }),
  pidfile: setting({
    section: 'Server mechanics',
    type: optionalString('<file>'),
    default: null,
    cli: ['-p', '--pid'],
    short: "Write the master's pid to this file; removed at exit.",
  }),
  proc_name: setting({
    section: 'Server mechanics',
    type: optionalString('<name>'),
    default: null,
    cli: ['-n', '--name'],
    short: 'Name in process titles: `tsgun: master [NAME]`.',
    defaultDoc: 'the APP argument',
  }),
  factory: setting({
    section: 'Server mechanics',
    type: bool,
    default: false,
    cli: ['--factory'],
    short: 'Treat ATTR as a factory: call it (awaiting a promise) to get the app.',
    doc: "Same as writing `MODULE:ATTR()`. The factory is called with a context object whose `server` is the worker's HTTP server, for WebSocket libraries to attach to (docs/realtime.md).",
  }),
  interface: setting({
    section: 'Server mechanics',
    type: choice(['auto', 'node', 'fetch'] as const),
    default: 'auto',
    cli: ['--interface'],
    short: 'App shape: detect it, or force a Node listener or a fetch handler.',
    doc: '`auto` detects, in order: an object with `callback()` (Koa), a Fastify instance, an object with `fetch()`, a function of two or more parameters (Node listener: Express, Connect), any other function (fetch handler).',
  }),

  control_socket: setting({
    section: 'Server mechanics',
    type: optionalString('<path>'),
    default: null,
    cli: ['--control-socket'],
    short: 'Unix socket for `tsgun status`, `reload`, `scale`, `stop` (mode 0600).',
    defaultDoc: "`tsgun-PID.sock` in the pidfile's directory, else in `$XDG_RUNTIME_DIR/tsgun` or `/tmp/tsgun-UID`",
  }),
  metrics_bind: setting({
    section: 'Server mechanics',
    type: metricsAddress,
    default: null,
    cli: ['--metrics-bind'],
    short: 'Serve Prometheus metrics at /metrics on this address (HOST:PORT or unix:PATH); off when unset.',
    doc: 'Served by the master from what workers report; the master never touches the request path.',
  }),

  reload: setting({
    section: 'Server mechanics',
    type: bool,
    default: false,
    cli: ['--reload'],
    short: "Development mode: restart the workers when the app's files change.",
    doc: 'A change that breaks the app (a syntax error, a throw at import) is logged once and the previous workers keep serving; the next good change brings the new code in.',
  }),
  reload_dirs: setting({
    section: 'Server mechanics',
    type: strings('<dir>'),
    default: [],
    cli: ['--reload-dir'],
    short: 'Directory to watch with --reload; repeat for several.',
    defaultDoc: "the app module's directory",
  }),
  reload_include: setting({
    section: 'Server mechanics',
    type: strings('<glob>'),
    default: ['*.ts', '*.mts', '*.cts', '*.tsx', '*.js', '*.mjs', '*.cjs', '*.json'],
    cli: ['--reload-include'],
    short: 'Files whose change triggers a reload (glob; without a slash it matches the file name).',
  }),
  reload_exclude: setting({
    section: 'Server mechanics',
    type: strings('<glob>'),
    default: ['node_modules', '.*', '*.swp', '*.swx', '*~', '#*#', '*.tmp'],
    cli: ['--reload-exclude'],
    short: 'Files and directories to ignore with --reload (glob; without a slash it matches any path segment).',
    doc: 'Excluded directories are not traversed at all. The default leaves out node_modules, dot files and directories (.git), and editor swap and backup files.',
  }),
  reload_delay: setting({
    section: 'Server mechanics',
    type: seconds(0),
    default: 0.25,
    cli: ['--reload-delay'],
    short: 'Seconds to wait for more changes before reloading (debounce).',
  }),
  reload_extra_files: setting({
    section: 'Server mechanics',
    type: strings('<file>'),
    default: [],
    cli: ['--reload-extra-file'],
    short: 'More files to watch with --reload, such as the config file (whose change reloads settings too).',
  }),

  // Logging
  loglevel: setting({
    section: 'Logging',
    type: choice(['trace', 'debug', 'info', 'warning', 'error', 'critical'] as const),
    default: 'info',
    cli: ['--log-level'],
    short: 'Error log level.',
  }),
  log_format: setting({
    section: 'Logging',
    type: choice(['auto', 'json', 'pretty'] as const),
    default: 'auto',
    cli: ['--log-format'],
    short: 'Error log format: `pretty` text, `json` lines, or `auto` (pretty on a terminal, JSON otherwise).',
  }),
  errorlog: setting({
    section: 'Logging',
    type: string('<file>'),
    default: '-',
    cli: ['--error-logfile', '--log-file'],
    short: 'Error log file; `-` is stderr.',
  }),
  capture_output: setting({
    section: 'Logging',
    type: bool,
    default: false,
    cli: ['--capture-output'],
    short: "Send the app's stdout and stderr (console.log, console.error) to the error log file.",
    doc: "Takes effect when `errorlog` is a file: workers write their standard output and error to it, as Gunicorn's `--capture-output` does. With `errorlog` `-` they go to stderr and stdout as before.",
  }),
  accesslog: setting({
    section: 'Logging',
    type: optionalString('<file>'),
    default: null,
    cli: ['--access-logfile'],
    short: 'Access log file; `-` is stdout. Off when unset.',
  }),
  access_log_format: setting({
    section: 'Logging',
    type: string('<format>'),
    default: '%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s"',
    cli: ['--access-logformat'],
    short: "Access log line format, with Gunicorn's atoms.",
    doc: 'Atoms: `h` remote address, `l` `-`, `u` user (basic auth), `t` date, `r` request line, `m` method, `U` path, `q` query, `H` protocol, `s` status, `B` body bytes, `b` body bytes or `-`, `f` referer, `a` user agent, `T` seconds, `M` milliseconds, `D` microseconds, `L` seconds with decimals, `p` pid, `{name}i` request header, `{name}o` response header, `{name}e` environment variable.',
  }),

  // HTTP
  limit_request_line: setting({
    section: 'HTTP',
    type: int(0, 65535),
    default: 4094,
    cli: ['--limit-request-line'],
    short: 'Longest request line (method, URL, version) in bytes; longer ones get 414. 0: no limit.',
  }),
  limit_request_fields: setting({
    section: 'HTTP',
    type: int(0, 32768),
    default: 100,
    cli: ['--limit-request-fields'],
    short: 'Most header fields in a request; more get 431. 0: no limit (up to 2000).',
  }),
  limit_request_field_size: setting({
    section: 'HTTP',
    type: int(0, 65535),
    default: 8190,
    cli: ['--limit-request-field-size'],
    short: 'Longest header field (name and value) in bytes; longer ones get 431. 0: no limit.',
  }),
  headers_timeout: setting({
    section: 'HTTP',
    type: seconds(0),
    default: 30,
    cli: ['--headers-timeout'],
    short:
      "Seconds a client has to send a request's headers (enforced within a second); slower clients get 408 and are closed (slowloris). 0: no limit.",
  }),
  request_timeout: setting({
    section: 'HTTP',
    type: seconds(0),
    default: 300,
    cli: ['--request-timeout'],
    short: 'Seconds a client has to send a whole request, body included. 0: no limit.',
  }),
  idle_connection_timeout: setting({
    section: 'HTTP',
    type: seconds(0),
    default: 10,
    cli: ['--idle-connection-timeout'],
    short: 'Seconds a new connection has to send its first byte; silent ones are closed. 0: no limit.',
    doc: "Keeps connections that never send anything from holding a worker's `worker_connections` slots (closed ones are logged at debug level). Over TLS, the handshake counts as the first bytes. At the limit, a worker also closes its idle keep-alive and silent connections, oldest first, to make room for a new one before it refuses it.",
  }),
  worker_connections: setting({
    section: 'HTTP',
    type: int(0),
    default: 1000,
    cli: ['--worker-connections'],
    short:
      'Most open connections per worker. At the limit, idle keep-alive and silent connections are closed (oldest first) to make room; a new one is refused only when every connection is busy. 0: no limit.',
    doc: 'Connections taken over by an upgrade (WebSocket) and requests in flight are never closed to make room. The file descriptor limit (`ulimit -n`) is a limit of the same kind: a worker close to it makes room the same way, and logs a warning (at most every 10 s).',
  }),
  limit_concurrency: setting({
    section: 'HTTP',
    type: int(0),
    default: 0,
    cli: ['--limit-concurrency'],
    short: 'Most requests in flight per worker; past it requests are answered 503 at once. 0: no limit.',
  }),
  server_header: setting({
    section: 'HTTP',
    type: bool,
    default: true,
    cli: ['--no-server-header'],
    short: "Send `Server: tsgun` (--no-server-header turns it off; an app's own Server header wins).",
  }),
  date_header: setting({
    section: 'HTTP',
    type: bool,
    default: true,
    cli: ['--no-date-header'],
    short: 'Send a `Date` header (--no-date-header turns it off).',
  }),
  headers: setting({
    section: 'HTTP',
    type: strings('<Name:Value>', checkHeader),
    default: [],
    cli: ['--header'],
    short: 'A default response header, Name:Value; repeat for several. The app can override it.',
  }),
  root_path: setting({
    section: 'HTTP',
    type: string('<path>'),
    default: '',
    cli: ['--root-path'],
    short: 'The path prefix the app is mounted under behind a proxy (for example /api).',
    doc: 'Fetch handlers see it in the request URL (`/api` + the path the proxy forwarded). Node listeners get the path as forwarded; use it to build links (Express: mount the app or set `app.locals`).',
  }),

  // Security
  forwarded_allow_ips: setting({
    section: 'Security',
    type: peers('<ips>'),
    default: ['127.0.0.1', '::1'],
    cli: ['--forwarded-allow-ips'],
    env: 'FORWARDED_ALLOW_IPS',
    short:
      'Peers trusted to set the client address and scheme in the headers `forwarded_headers` names (comma list: addresses, CIDR ranges, `unix`, `*`).',
    doc:
      'From these peers, tsgun makes the forwarded client visible as `req.socket.remoteAddress` (Node listeners), `request.ip` and the URL scheme (fetch handlers), and `%(h)s` in the access log. Add `unix` when nginx connects over a unix socket. ' +
      'With `*`, every forwarded address is trusted too, so the leftmost one, which the client may have written, is taken: list your proxies instead.',
  }),
  proxy_protocol: setting({
    section: 'Security',
    type: choice(['off', 'v1', 'v2', 'auto'] as const),
    default: 'off',
    cli: ['--proxy-protocol'],
    short: 'Accept a PROXY protocol header (HAProxy, AWS NLB) from proxy_allow_ips: v1, v2, or auto (either, or none).',
    doc: 'With v1 or v2 the header is required from allowed peers; a PROXY header from any other peer is rejected and the connection closed.',
  }),
  proxy_protocol_timeout: setting({
    section: 'Security',
    type: seconds(0),
    default: 5,
    cli: ['--proxy-protocol-timeout'],
    short: 'Seconds a connection has to send its whole PROXY protocol header; slower ones are closed. 0: no limit.',
    doc: 'Counted from the accept; `headers_timeout` and `request_timeout` start once the header is in.',
  }),
  forwarded_headers: setting({
    section: 'Security',
    type: choice(['x-forwarded', 'forwarded'] as const),
    default: 'x-forwarded',
    cli: ['--forwarded-headers'],
    short:
      'Which headers a trusted proxy forwards the client in: `x-forwarded` (X-Forwarded-For/-Proto) or `forwarded` (RFC 7239). The other family is ignored.',
    doc:
      'Honouring both would let a client send the family its proxy does not overwrite (nginx appends to X-Forwarded-For and passes `Forwarded` through untouched), so tsgun reads one. ' +
      'Addresses (`for=` nodes) are walked from the right, skipping peers in `forwarded_allow_ips`: the first untrusted one is the client, as Express (`proxy-addr`) and Uvicorn do; ' +
      "if every one is trusted, the leftmost. The scheme is the X-Forwarded-Proto entry at the same place from the right (or its only entry), or the chosen element's `proto=`. " +
      'A node that is not an address (`unknown`, `_hidden`, malformed) leaves the peer as the client. The raw headers reach the app unchanged.',
  }),
  proxy_allow_ips: setting({
    section: 'Security',
    type: peers('<ips>'),
    default: ['127.0.0.1', '::1'],
    cli: ['--proxy-allow-from'],
    short: 'Peers allowed to send a PROXY protocol header (comma list, as forwarded_allow_ips).',
  }),

  // TLS
  certfile: setting({
    section: 'TLS',
    type: optionalString('<file>'),
    default: null,
    cli: ['--certfile'],
    short: 'TLS certificate (PEM, with its chain); serve HTTPS.',
    doc: 'Read by each worker at boot, so a HUP picks up a renewed certificate with no dropped connection.',
  }),
  keyfile: setting({
    section: 'TLS',
    type: optionalString('<file>'),
    default: null,
    cli: ['--keyfile'],
    short: 'TLS private key (PEM).',
  }),
  keyfile_password: setting({
    section: 'TLS',
    type: optionalString('<password>'),
    default: null,
    cli: ['--keyfile-password'],
    short: 'Password of an encrypted keyfile.',
  }),
  ca_certs: setting({
    section: 'TLS',
    type: optionalString('<file>'),
    default: null,
    cli: ['--ca-certs'],
    short: 'CA certificates (PEM) that sign client certificates.',
  }),
  cert_reqs: setting({
    section: 'TLS',
    type: choice(['none', 'optional', 'required'] as const),
    default: 'none',
    cli: ['--cert-reqs'],
    short: 'Client certificates: not asked for, asked for, or required (verified against ca_certs).',
  }),
  ciphers: setting({
    section: 'TLS',
    type: optionalString('<list>'),
    default: null,
    cli: ['--ciphers'],
    short: 'OpenSSL cipher list.',
    defaultDoc: "Node's defaults",
  }),

  // Server hooks
  on_starting: hookSetting('master', 'on_starting(server)', 'Called before the master binds its sockets.'),
  on_reload: hookSetting('master', 'on_reload(server)', 'Called when a HUP reload begins.'),
  when_ready: hookSetting(
    'master',
    'when_ready(server)',
    'Called once the sockets are bound, before the first workers are spawned.',
  ),
  pre_fork: hookSetting('master', 'pre_fork(server, worker)', 'Called just before a worker is spawned.'),
  post_fork: hookSetting(
    'worker',
    'post_fork(server, worker)',
    'Called in the new worker process before the app is loaded.',
  ),
  post_worker_init: hookSetting(
    'worker',
    'post_worker_init(worker)',
    'Called in the worker after the app is loaded, before it reports ready.',
  ),
  worker_int: hookSetting('worker', 'worker_int(worker)', 'Called in the worker when it receives SIGINT or SIGQUIT.'),
  worker_abort: hookSetting(
    'worker',
    'worker_abort(worker)',
    'Called in the worker when the master aborts it for a missed heartbeat.',
  ),
  pre_exec: hookSetting('master', 'pre_exec(server)', 'Called just before a new master is started (USR2).'),
  pre_request: hookSetting(
    'worker',
    'pre_request(worker, req)',
    'Called in the worker before each request is handed to the app (synchronous).',
  ),
  post_request: hookSetting(
    'worker',
    'post_request(worker, req, res, durationMs)',
    'Called in the worker after each response (synchronous).',
  ),
  child_exit: hookSetting(
    'master',
    'child_exit(server, worker)',
    'Called after a worker process has exited, for any reason.',
  ),
  worker_exit: hookSetting(
    'worker',
    'worker_exit(server, worker)',
    "Called in the worker as it exits, after its connections are closed and the app's own shutdown has run.",
  ),
  nworkers_changed: hookSetting(
    'master',
    'nworkers_changed(server, newValue, oldValue)',
    'Called when the target number of workers changes.',
  ),
  on_exit: hookSetting('master', 'on_exit(server)', 'Called just before the master exits.'),
  ssl_context: hookSetting(
    'worker',
    'ssl_context(worker, options) => options',
    'Called in the worker with the TLS options; return them changed (for example SNICallback, minVersion).',
  ),
} as const;

export type SettingName = keyof typeof SETTINGS;
type ValueOf<S> = S extends Setting<infer T> ? T : never;

/** Every setting's resolved value. */
export type Settings = { -readonly [K in SettingName]: ValueOf<(typeof SETTINGS)[K]> };

/** The keys a config file may hold: every setting except command-line-only ones. */
export type ConfigFileKeys = Exclude<SettingName, 'config' | 'check_config' | 'print_config'>;

export const SETTING_NAMES = Object.keys(SETTINGS) as SettingName[];

export function getSetting(name: SettingName): Setting<unknown> {
  return SETTINGS[name] as Setting<unknown>;
}

export function defaultSettings(): Settings {
  const out: Record<string, unknown> = {};
  for (const name of SETTING_NAMES) {
    const d = SETTINGS[name].default;
    out[name] = Array.isArray(d) ? [...d] : d;
  }
  return out as Settings;
}
