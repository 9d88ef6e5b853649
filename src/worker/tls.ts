/**
 * TLS options from the settings. The master calls `tlsOptions` before binding (and before
 * a reload) so that a missing, unreadable or mismatched file is an `Error:` line at once;
 * workers call it again at boot, which is how a HUP picks up a renewed certificate.
 */
import { readFileSync } from 'node:fs';
import type { TlsOptions } from 'node:tls';
import type { Settings } from '../config/settings.js';
import { TsgunError } from '../errors.js';

type TlsSettings = Pick<Settings, 'certfile' | 'keyfile' | 'keyfile_password' | 'ca_certs' | 'cert_reqs' | 'ciphers'>;

export function tlsEnabled(settings: Pick<Settings, 'certfile' | 'keyfile'>): boolean {
  return settings.certfile !== null || settings.keyfile !== null;
}

function read(what: string, file: string): Buffer {
  try {
    return readFileSync(file);
  } catch (err) {
    throw new TsgunError('TSGUN_ERR_CONFIG_VALUE', `${what} ${file} cannot be read (${(err as NodeJS.ErrnoException).code ?? String(err)}); check --${what.replace(/_/g, '-')}`);
  }
}

/** Secure-context options for node:tls / https / http2, checked by building a context. */
export function tlsOptions(settings: TlsSettings): TlsOptions | null {
  if (!tlsEnabled(settings)) return null;
  if (!settings.certfile || !settings.keyfile) {
    throw new TsgunError('TSGUN_ERR_CONFIG_VALUE', `TLS needs both certfile and keyfile (got only ${settings.certfile ? 'certfile' : 'keyfile'}); pass --certfile and --keyfile`);
  }
  const options: TlsOptions = {
    cert: read('certfile', settings.certfile),
    key: read('keyfile', settings.keyfile),
    ALPNProtocols: ['http/1.1'],
  };
  if (settings.keyfile_password !== null) options.passphrase = settings.keyfile_password;
  if (settings.ca_certs) options.ca = read('ca_certs', settings.ca_certs);
  if (settings.ciphers) options.ciphers = settings.ciphers;
  if (settings.cert_reqs !== 'none') {
    options.requestCert = true;
    options.rejectUnauthorized = settings.cert_reqs === 'required';
    if (!settings.ca_certs) throw new TsgunError('TSGUN_ERR_CONFIG_VALUE', `cert_reqs ${settings.cert_reqs} needs ca_certs, the CA that signs client certificates; pass --ca-certs`);
  }
  try {
    // node:tls loads only when TLS is configured (it costs every process a few ms to start).
    process.getBuiltinModule('node:tls').createSecureContext(options);
  } catch (err) {
    const message = (err as Error).message;
    if (settings.ciphers && /cipher/i.test(message)) {
      throw new TsgunError('TSGUN_ERR_CONFIG_VALUE', `ciphers ${JSON.stringify(settings.ciphers)} is not a cipher list OpenSSL accepts (${message}); check --ciphers`);
    }
    const hint = keyfileProblem(options, settings.keyfile_password) ?? (/key values mismatch/i.test(message) ? 'the keyfile does not belong to the certfile' : 'check that both are PEM files');
    throw new TsgunError('TSGUN_ERR_CONFIG_VALUE', `cannot use certfile ${settings.certfile} with keyfile ${settings.keyfile}: ${message}; ${hint}`);
  }
  return options;
}

/**
 * What is wrong with the keyfile on its own, or null if it reads as a private key. A wrong
 * password does not always say so: about one time in 256 the decryption's padding check
 * passes and OpenSSL reports only that it cannot decode the result.
 */
function keyfileProblem(options: TlsOptions, password: string | null): string | null {
  try {
    process.getBuiltinModule('node:crypto').createPrivateKey({ key: options.key as Buffer, format: 'pem', passphrase: password ?? undefined });
    return null;
  } catch (err) {
    if (!/ENCRYPTED/.test(String(options.key)) && !/passphrase|bad decrypt/i.test((err as Error).message)) return 'check that the keyfile is a PEM private key';
    return password === null ? 'the keyfile is encrypted: give its password with --keyfile-password' : 'the keyfile password is wrong: check --keyfile-password';
  }
}
