// How resources are released, named once: what holds model or native memory has `dispose()` (node-llama-cpp's
// convention; see document-scorer.ts); what holds a socket, server, queue, Redis connection or file has `close()`;
// either adds `[Symbol.asyncDispose]` where callers hold it with `await using`. `start()`/`stop()` name only
// schedules (timers) inside an owner that closes them.

/** A network or file resource, closed on every path: by `close()` or at the end of an `await using` scope. */
export interface Closeable extends AsyncDisposable {
  close(): Promise<void>;
}
