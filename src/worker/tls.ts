/**
 * TLS options from the settings. The master reads the certificate, key and CA files, as
 * root if it started as root (as nginx does), before binding and at each reload: a
 * missing, unreadable or mismatched file is an `Error:` line at once, and a HUP picks up a
 * renewed certificate. Workers get the contents, not the paths (see `TlsMaterial`), so an
 * unprivileged `user` needs no access to the key file.
 */
import { readFileSync } from 'node:fs';
import type { TlsOptions } from 'node:tls';
import type { Settings } from '../config/settings.js';
import { TsgunError } from '../errors.js';

type TlsSettings = Pick<Settings, 'certfile' | 'keyfile' | 'keyfile_password' | 'ca_certs' | 'cert_reqs' | 'ciphers'>;

/**
 * The files' contents (base64, so any bytes survive JSON). The master hands them to each
 * worker through a pipe of its own rather than the boot record: the boot record is an
 * environment variable, which /proc/PID/environ shows to every process of the same user.
 */
export interface TlsMaterial {
  cert: string;
  key: string;
  ca: string | null;
}

export function tlsEnabled(settings: Pick<Settings, 'certfile' | 'keyfile'>): boolean {
  return settings.certfile !== null || settings.keyfile !== null;
}

function read(what: string, file: string): Buffer {
  try {
    return readFileSync(file);
  } catch (err) {
    throw new TsgunError(
      'TSGUN_ERR_CONFIG_VALUE',
      `${what} ${file} cannot be read (${(err as NodeJS.ErrnoException).code ?? String(err)}); check --${what.replace(/_/g, '-')}`,
    );
  }
}

/** Read the files TLS needs and check them by building a context; null without TLS. */
export function readTlsFiles(settings: TlsSettings): TlsMaterial | null {
  if (!tlsEnabled(settings)) return null;
  if (!settings.certfile || !settings.keyfile) {
    throw new TsgunError(
      'TSGUN_ERR_CONFIG_VALUE',
      `TLS needs both certfile and keyfile (got only ${settings.certfile ? 'certfile' : 'keyfile'}); pass --certfile and --keyfile`,
    );
  }
  const material: TlsMaterial = {
    cert: read('certfile', settings.certfile).toString('base64'),
    key: read('keyfile', settings.keyfile).toString('base64'),
    ca: settings.ca_certs ? read('ca_certs', settings.ca_certs).toString('base64') : null,
  };
  tlsOptions(settings, material);
  return material;
}

/** Secure-context options for node:tls / https / http2 from the files' contents, checked by building a context. */
export function tlsOptions(settings: TlsSettings, material: TlsMaterial): TlsOptions {
  const options: TlsOptions = {
    cert: Buffer.from(material.cert, 'base64'),
    key: Buffer.from(material.key, 'base64'),
    ALPNProtocols: ['http/1.1'],
  };
  if (settings.keyfile_password !== null) options.passphrase = settings.keyfile_password;
  if (material.ca !== null) options.ca = Buffer.from(material.ca, 'base64');
  if (settings.ciphers) options.ciphers = settings.ciphers;
  if (settings.cert_reqs !== 'none') {
    options.requestCert = true;
    options.rejectUnauthorized = settings.cert_reqs === 'required';
    if (material.ca === null) {
      const message = `cert_reqs ${settings.cert_reqs} needs ca_certs, the CA that signs client certificates; pass --ca-certs`;
      throw new TsgunError('TSGUN_ERR_CONFIG_VALUE', message);
    }
  }
  try {
    // node:tls loads only when TLS is configured (it costs every process a few ms to start).
    process.getBuiltinModule('node:tls').createSecureContext(options);
  } catch (err) {
    const message = (err as Error).message;
    if (settings.ciphers && /cipher/i.test(message)) {
      throw new TsgunError(
        'TSGUN_ERR_CONFIG_VALUE',
        `ciphers ${JSON.stringify(settings.ciphers)} is not a cipher list OpenSSL accepts (${message}); check --ciphers`,
      );
    }
    const hint =
      keyfileProblem(options, settings.keyfile_password) ??
      (/key values mismatch/i.test(message)
        ? 'the keyfile does not belong to the certfile'
        : 'check that both are PEM files');
    throw new TsgunError(
      'TSGUN_ERR_CONFIG_VALUE',
      `cannot use certfile ${settings.certfile} with keyfile ${settings.keyfile}: ${message}; ${hint}`,
    );
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
    process
      .getBuiltinModule('node:crypto')
      .createPrivateKey({ key: options.key as Buffer, format: 'pem', passphrase: password ?? undefined });
    return null;
  } catch (err) {
    if (!/ENCRYPTED/.test(String(options.key)) && !/passphrase|bad decrypt/i.test((err as Error).message))
      return 'check that the keyfile is a PEM private key';
    return password === null
      ? 'the keyfile is encrypted: give its password with --keyfile-password'
      : 'the keyfile password is wrong: check --keyfile-password';
  }
}
