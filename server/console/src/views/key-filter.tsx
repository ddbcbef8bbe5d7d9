/** A key filter box: `attribute=value, …`, checked against the table's attributes as it is typed. */
import type { MessageInitShape } from "@bufbuild/protobuf";
import type { KeyAttribute, ValueSchema } from "@populus/sdk/gen/populus/v1/types_pb.js";
import { useState } from "preact/hooks";
import { KeyInputError, parseKeyText } from "../keys.js";

export type Restriction = Readonly<Record<string, MessageInitShape<typeof ValueSchema>>>;

export function KeyFilter({ attributes, onChange }: { attributes: readonly KeyAttribute[]; onChange(r: Restriction): void }) {
  const [text, setText] = useState("");
  const [problem, setProblem] = useState<string | undefined>(undefined);
  const apply = (value: string) => {
    setText(value);
    try {
      onChange(parseKeyText(value, attributes, false));
      setProblem(undefined);
    } catch (err) {
      if (!(err instanceof KeyInputError)) throw err;
      setProblem(err.message);
    }
  };
  return (
    <label class="filter">
      key filter
      <input
        type="search"
        name="key-filter"
        placeholder={attributes.map((a) => `${a.name}=…`).join(", ")}
        value={text}
        // Kept as typed: the page re-renders every second (its clock), which would otherwise reset the box to the last applied filter.
        onInput={(e) => setText(e.currentTarget.value)}
        onChange={(e) => apply(e.currentTarget.value)}
      />
      {problem !== undefined && <span class="field-problem">{problem}</span>}
    </label>
  );
}
