// The coordinator's one lock: queue events, submits, cancels, retries, reconciliation and fallback failures change
// runs one at a time, in the order they came.

export class MutationChain {
  private serial: Promise<unknown> = Promise.resolve();

  /** Runs `fn` after every earlier mutation: events, submits, cancels and retries never interleave. */
  exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const next = this.serial.then(fn);
    this.serial = next.catch(() => undefined);
    return next;
  }

  /** Settles once every mutation started so far has (whatever its outcome). */
  async settled(): Promise<void> {
    await this.serial.catch(() => undefined);
  }
}
