/** The record filters (agent, user, task, model, provider, outcome), shared by Explore and Records. */
import { useState } from "preact/hooks";

export const outcomes = ["completed", "upstream_error", "client_aborted", "rejected", "interrupted"] as const;
export const filterFields = ["agent", "user", "task", "model", "provider"] as const;
export type Filters = Partial<Record<(typeof filterFields)[number] | "outcome", string>>;

/** A form of filter fields; `onApply` gets the non-empty ones when it is submitted. */
export function FilterForm({ initial, onApply, idPrefix }: { initial: Filters; onApply: (filters: Filters) => void; idPrefix: string }) {
  const [values, setValues] = useState<Filters>(initial);
  const set = (field: keyof Filters, value: string) => setValues({ ...values, [field]: value });
  const submit = (event: Event) => {
    event.preventDefault();
    onApply(Object.fromEntries(Object.entries(values).filter(([, value]) => value)) as Filters);
  };
  return (
    <form class="filters" onSubmit={submit} aria-label="Filters">
      {filterFields.map((field) => (
        <label for={`${idPrefix}-${field}`}>
          {field}
          <input
            id={`${idPrefix}-${field}`}
            name={field}
            value={values[field] ?? ""}
            onInput={(e) => set(field, (e.currentTarget as HTMLInputElement).value)}
          />
        </label>
      ))}
      <label for={`${idPrefix}-outcome`}>
        outcome
        <select
          id={`${idPrefix}-outcome`}
          name="outcome"
          value={values.outcome ?? ""}
          onChange={(e) => set("outcome", (e.currentTarget as HTMLSelectElement).value)}
        >
          <option value="">any</option>
          {outcomes.map((outcome) => (
            <option value={outcome}>{outcome}</option>
          ))}
        </select>
      </label>
      <button type="submit">Apply</button>
    </form>
  );
}
