import { useCallback, useEffect, useState } from "react";

/** Loads with `load` on mount, on `reload()`, and every `everyMs` if given. */
export function useLoad<T>(load: () => Promise<T>, everyMs?: number) {
  const [data, setData] = useState<T | null>(null);
  const [error, setError] = useState<string | null>(null);
  const reload = useCallback(() => {
    load().then(
      (value) => {
        setData(value);
        setError(null);
      },
      (e: unknown) => setError(e instanceof Error ? e.message : String(e)),
    );
  }, [load]);
  useEffect(() => {
    reload();
    if (!everyMs) return;
    const timer = setInterval(reload, everyMs);
    return () => clearInterval(timer);
  }, [reload, everyMs]);
  return { data, error, reload };
}

/** Runs a change, then `after`; a failure is shown where `setError` shows it. */
export async function act(change: () => Promise<unknown>, after: () => void, setError: (e: string | null) => void) {
  try {
    await change();
    setError(null);
    after();
  } catch (e) {
    setError(e instanceof Error ? e.message : String(e));
  }
}
