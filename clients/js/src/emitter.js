// A small typed event emitter shared by Client and Channel. A listener that throws does
// not break the connection: its exception is rethrown on its own task, where the host
// (browser console, Node's uncaught-exception handling) reports it.

export class Emitter {
  #listeners = new Map();

  /**
   * Calls `listener` for each `event`; returns the function that unsubscribes it.
   * @param {string} event
   * @param {(...args: any[]) => void} listener
   * @returns {() => void}
   */
  on(event, listener) {
    let set = this.#listeners.get(event);
    if (!set) this.#listeners.set(event, (set = new Set()));
    set.add(listener);
    return () => set.delete(listener);
  }

  /** Like `on`, for the next `event` only. */
  once(event, listener) {
    const off = this.on(event, (...args) => {
      off();
      listener(...args);
    });
    return off;
  }

  /** @protected */
  emit(event, ...args) {
    const set = this.#listeners.get(event);
    if (!set) return;
    for (const listener of [...set]) {
      try {
        listener(...args);
      } catch (err) {
        queueMicrotask(() => {
          throw err;
        });
      }
    }
  }
}
