/**
 * The status a client got, for stats and the access log. Apart from both so that the
 * access log, loaded only when it is on, and the request path need not import each other.
 */
import type { ServerResponse } from 'node:http';

/**
 * On a response that tsgun answered in the app's stead (its request's body framing failed
 * after the app got it): the status the client got, which `statusCode` does not say.
 */
export const kSentStatus = Symbol.for('tsgun.sentStatus');

/** The status the client got for this response. */
export function sentStatus(res: ServerResponse): number {
  return (res as ServerResponse & { [kSentStatus]?: number })[kSentStatus] ?? res.statusCode;
}
