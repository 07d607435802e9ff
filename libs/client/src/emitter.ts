/** A listener of event `K` of an event map (event name -> argument tuple). */
export type Listener<M, K extends keyof M> = M[K] extends unknown[] ? (...args: M[K]) => void : never;

/**
 * A small typed event emitter (centrifuge-js style): `on` returns the function that removes the
 * listener. A listener that throws does not stop the others; its error goes to `listenerFailed`.
 */
export class Emitter<M extends { [K in keyof M]: unknown[] }> {
  /** Stored untyped: `on` and `emit` keep each event's listener and arguments in step. */
  private readonly listeners = new Map<keyof M, Set<unknown>>();

  /** Calls `fn` on every `event` until the returned function is called. */
  on<K extends keyof M>(event: K, fn: Listener<M, K>): () => void {
    let set = this.listeners.get(event);
    if (set === undefined) {
      set = new Set();
      this.listeners.set(event, set);
    }
    set.add(fn);
    return () => this.off(event, fn);
  }

  /** Calls `fn` on the next `event` only. */
  once<K extends keyof M>(event: K, fn: Listener<M, K>): () => void {
    const wrapped = ((...args: M[K]) => {
      off();
      (fn as (...a: M[K]) => void)(...args);
    }) as Listener<M, K>;
    const off = this.on(event, wrapped);
    return off;
  }

  off<K extends keyof M>(event: K, fn: Listener<M, K>): void {
    this.listeners.get(event)?.delete(fn);
  }

  protected emit<K extends keyof M>(event: K, ...args: M[K]): void {
    const set = this.listeners.get(event);
    if (set === undefined) return;
    for (const fn of [...set]) {
      try {
        (fn as (...a: M[K]) => void)(...args);
      } catch (err) {
        this.listenerFailed(err, event);
      }
    }
  }

  /** Called with what a listener threw (subclasses report it). */
  protected listenerFailed(_err: unknown, _event: keyof M): void {
    // Overridden by PushClient, which emits it as an `error` event.
  }
}
