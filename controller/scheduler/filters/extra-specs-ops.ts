/**
 * Nova's extra spec operators (`nova/scheduler/filters/extra_specs_ops.py`):
 * how a requested value like "<in> ssd" or ">= 4" matches a value a host or
 * aggregate has.
 *
 *   "<in> x"          x is a substring of the value
 *   "<all-in> x y"    every word is among the value's comma/space separated items
 *   "<or> a <or> b"   the value is one of a, b
 *   "s== x", "s!= x", "s>= x", "s> x", "s<= x", "s< x"   string comparison
 *   "= n"             the value is a number ≥ n (Nova's meaning)
 *   "== n", "!= n", ">= n", "<= n"                        numeric comparison
 *   anything else     the value equals it exactly
 */
export function matchExtraSpec(value: string, requested: string): boolean {
  const req = requested.trim();
  const words = req.split(/\s+/);
  const op = words[0] ?? "";
  const rest = req.slice(op.length).trim();
  const num = (s: string) => (s.trim() === "" ? NaN : Number(s));
  switch (op) {
    case "<in>":
      return value.includes(rest);
    case "<all-in>": {
      const have = new Set(value.split(/[\s,]+/).filter(Boolean));
      return words.slice(1).every((w) => have.has(w));
    }
    case "<or>":
      return req
        .split("<or>")
        .map((x) => x.trim())
        .filter(Boolean)
        .includes(value.trim());
    case "s==":
      return value === rest;
    case "s!=":
      return value !== rest;
    case "s>=":
      return value >= rest;
    case "s>":
      return value > rest;
    case "s<=":
      return value <= rest;
    case "s<":
      return value < rest;
    case "=":
      return num(value) >= num(rest);
    case "==":
      return num(value) === num(rest);
    case "!=":
      return num(value) !== num(rest);
    case ">=":
      return num(value) >= num(rest);
    case "<=":
      return num(value) <= num(rest);
    default:
      return value === req;
  }
}
