import type { Doc, Store } from "../../lib/store/store";

/** Makes the next call of `method` on `store` that `when` accepts throw, once (a crash point). */
export function failOnce<T extends Doc, K extends "insert" | "update" | "updateOne" | "remove">(
  store: Store<T>,
  method: K,
  when: (...args: Parameters<Store<T>[K]>) => boolean = () => true,
): { fired: () => boolean } {
  const real = store[method].bind(store) as (...args: Parameters<Store<T>[K]>) => unknown;
  let fired = false;
  const wrapped = (...args: Parameters<Store<T>[K]>) => {
    if (!fired && when(...args)) {
      fired = true;
      store[method] = real as Store<T>[K];
      return Promise.reject(new Error(`crash point: ${store.name}.${method}`));
    }
    return real(...args);
  };
  store[method] = wrapped as Store<T>[K];
  return { fired: () => fired };
}
