/**
 * The watchdog pipe, both ends of it: the master asks a stuck worker's watchdog thread
 * (watchdog-thread.cts) where the worker's JavaScript is blocked, before it kills the worker.
 *
 * Protocol, one line per message: the master writes `stack`; the thread answers
 * `{"ack":true}` at once, then `{"frames":["at fn (file:line:col)", ...]}` when it has them
 * (no frames, and an `error`, when it could not take them). The ack lets the master tell a
 * thread that is taking the stack (which can take seconds in a large app) from one that will
 * never answer. Before that, while a worker is late (half way to its timeout), the master writes
 * `warm` every housekeeping round, unanswered: the thread gets its debugger ready if the worker's
 * main thread is indeed silent. The pipe closing tells the thread that the master is gone. So a
 * healthy worker's thread has nothing to do and never wakes up.
 *
 * CommonJS, as the thread that requires it.
 */
import stringDecoder = require('node:string_decoder');

const REQUEST = 'stack';
const WARM = 'warm';

/**
 * How long the master waits for a stuck worker's stack before killing it anyway: for the thread
 * to acknowledge at all, then for a capture it has begun (Debugger.enable takes seconds in a very
 * large app). The replacement is already booting meanwhile.
 */
const TIMING = { ackMs: 1500, captureMs: 5000 };

type Reply = { ack: true } | { frames: string[]; error?: string };

/** The pipe as either end uses it: a net.Socket over the inherited fd, or the master's end of it. */
interface Pipe {
  readonly destroyed: boolean;
  write(data: string): unknown;
  on(event: 'data', listener: (chunk: Buffer | string) => void): unknown;
  off(event: 'data', listener: (chunk: Buffer | string) => void): unknown;
}

/** A 'data' listener that calls `onLine` with each whole line, however the stream splits them. */
function lines(onLine: (line: string) => void): (chunk: Buffer | string) => void {
  const decoder = new stringDecoder.StringDecoder('utf8');
  let buffered = '';
  return (chunk) => {
    buffered += typeof chunk === 'string' ? chunk : decoder.write(chunk);
    for (let nl = buffered.indexOf('\n'); nl >= 0; nl = buffered.indexOf('\n')) {
      const line = buffered.slice(0, nl);
      buffered = buffered.slice(nl + 1);
      onLine(line);
    }
  };
}

/**
 * The thread's end: acknowledge each stack request at once, then send the frames `answer`
 * finds; call `warm` (when given) on each warm request.
 */
function serveStackRequests(pipe: Pipe, answer: () => Promise<string[]>, warm?: () => void): void {
  const send = (reply: Reply): void => void pipe.write(`${JSON.stringify(reply)}\n`);
  pipe.on(
    'data',
    lines((line) => {
      if (line === WARM) return warm?.();
      if (line !== REQUEST) return;
      send({ ack: true });
      answer().then(
        (frames) => send({ frames }),
        (err: unknown) => send({ frames: [], error: String(err) }),
      );
    }),
  );
}

/**
 * The master's end: ask for the stack, and call `done` once, with the frames, or with none
 * when there is no pipe, when the thread does not acknowledge within `ackMs`, or when its
 * frames do not follow within `captureMs` of the acknowledgement.
 */
function requestStack(pipe: Pipe | null, done: (frames: string[]) => void, timing = TIMING): void {
  if (!pipe || pipe.destroyed) return done([]);
  let settled = false;
  const finish = (frames: string[]): void => {
    if (settled) return;
    settled = true;
    clearTimeout(timer);
    pipe.off('data', onData);
    done(frames);
  };
  let timer = setTimeout(() => finish([]), timing.ackMs);
  const onData = lines((line) => {
    let reply: Partial<{ ack: boolean; frames: string[] }>;
    try {
      reply = JSON.parse(line) as typeof reply;
    } catch {
      return finish([]);
    }
    if (!reply.ack) return finish(reply.frames ?? []);
    clearTimeout(timer);
    timer = setTimeout(() => finish([]), timing.captureMs);
  });
  pipe.on('data', onData);
  pipe.write(`${REQUEST}\n`);
}

/** The master's end: tell a late worker's thread to get ready to take the stack. */
function warmUp(pipe: Pipe | null): void {
  if (pipe && !pipe.destroyed) pipe.write(`${WARM}\n`);
}

const watchdogPipe = { serveStackRequests, requestStack, warmUp };
export = watchdogPipe;
