/** A page's data from one GET, bound to the URL that asked for it. */
import { useEffect, useState } from "preact/hooks";
import { get } from "./api.ts";

interface Answer<T> {
  data: T | null;
  error: string | null;
}

/**
 * The answer of `GET url`, or null data while it loads. Never an earlier URL's answer: the render
 * that follows a change of filters shows "loading" at once, not the old rows under the new
 * filters (and not `data-ready`), and an answer that arrives after the URL changed again is dropped.
 */
export function useAnswer<T>(url: string): Answer<T> {
  const [state, setState] = useState<Answer<T> & { url: string | null }>({ url: null, data: null, error: null });
  useEffect(() => {
    let current = true;
    get<T>(url).then(
      (data) => current && setState({ url, data, error: null }),
      (caught: Error) => current && setState({ url, data: null, error: caught.message }),
    );
    return () => {
      current = false;
    };
  }, [url]);
  return state.url === url ? state : { data: null, error: null };
}
