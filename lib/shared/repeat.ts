/**
 * Runs `work` every `everyMs`, counted from the end of the previous run so runs never
 * overlap; a failure is reported to `onError` and the next run comes as usual. Returns
 * the function that stops it. `everyMs` of 0 or less: never. The timer does not keep the
 * process alive (the broker does).
 */
export function repeat(
  everyMs: number,
  work: () => Promise<unknown>,
  onError: (err: unknown) => void,
): () => void {
  if (everyMs <= 0) return () => undefined;
  let stopped = false;
  let timer: NodeJS.Timeout | undefined;
  const tick = () => {
    work()
      .catch(onError)
      .finally(() => {
        if (!stopped) timer = setTimeout(tick, everyMs).unref();
      });
  };
  timer = setTimeout(tick, everyMs).unref();
  return () => {
    stopped = true;
    clearTimeout(timer);
  };
}
