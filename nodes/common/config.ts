// One way to read a node's configuration. The editor stores numbers as strings or
// numbers, an empty field means the default, and a wrong value is a TrafficError with the
// node's own code naming the field — never NaN passed on, never text cast to a number.
import { TrafficError, type TrafficErrorCode } from "../../src/errors";
import { splitList } from "../../src/net/cidr";

type Field = string | number | undefined | null;

/** The field as trimmed text; "" when absent. */
const text = (value: Field): string => String(value ?? "").trim();
const INTEGER = /^[+-]?\d+$/;
const DECIMAL = /^[+-]?(\d+\.?\d*|\.\d+)$/;

export interface ConfigReader {
  /** An integer from min to max; an empty field gives `fallback`. */
  int(value: Field, field: string, range: { fallback: number; min: number; max: number }): number;
  /** As int, but an empty field gives undefined (the library's default applies). */
  optionalInt(value: Field, field: string, range: { min: number; max: number }): number | undefined;
  /** A finite number from min to max (rates, fractions); an empty field gives `fallback`. */
  number(value: Field, field: string, range: { fallback: number; min: number; max: number }): number;
  /** Seconds in the editor, milliseconds out (rounded); an empty field gives `fallbackMs`. */
  seconds(value: Field, field: string, range: { fallbackMs: number; max: number }): number;
  /** A port, 1-65535 (0 too when `allowZero`: the kernel picks one). */
  port(value: Field, field: string, options?: { fallback?: number; allowZero?: boolean }): number;
  /** A list of ports, separated by commas or spaces. */
  ports(value: Field, field: string): number[];
  /** One of `allowed`; an empty field gives `fallback`. */
  oneOf<T extends string>(value: Field, field: string, allowed: readonly T[], fallback: T): T;
}

/** A reader whose errors carry `code` (ERR_LISTENER_CONFIG, ERR_FORWARD_CONFIG, …). */
export function configReader(code: TrafficErrorCode): ConfigReader {
  const fail = (field: string, why: string, value: Field): never => {
    throw new TrafficError(code, `${why}, got ${JSON.stringify(value)}`, field);
  };
  // Decimal only: Number() would also take "0x10", "1e3" and " ".
  const decimal = (value: Field, pattern: RegExp): number => (pattern.test(text(value)) ? Number(text(value)) : Number.NaN);
  const int = (value: Field, field: string, min: number, max: number): number => {
    const n = decimal(value, INTEGER);
    if (!Number.isInteger(n) || n < min || n > max) fail(field, `must be an integer from ${min} to ${max}`, value);
    return n;
  };
  return {
    int: (value, field, { fallback, min, max }) => (text(value) === "" ? fallback : int(value, field, min, max)),
    optionalInt: (value, field, { min, max }) => (text(value) === "" ? undefined : int(value, field, min, max)),
    number(value, field, { fallback, min, max }) {
      if (text(value) === "") return fallback;
      const n = decimal(value, DECIMAL);
      if (!Number.isFinite(n) || n < min || n > max) fail(field, `must be a number from ${min} to ${max}`, value);
      return n;
    },
    seconds(value, field, { fallbackMs, max }) {
      if (text(value) === "") return fallbackMs;
      const n = decimal(value, DECIMAL);
      if (!Number.isFinite(n) || n < 0 || n > max) fail(field, `must be 0-${max} seconds`, value);
      return Math.round(n * 1000);
    },
    port: (value, field, { fallback, allowZero = false } = {}) => (text(value) === "" && fallback !== undefined ? fallback : int(value, field, allowZero ? 0 : 1, 65535)),
    ports: (value, field) => splitList(text(value)).map((p) => (/^\d{1,5}$/.test(p) ? int(p, field, 1, 65535) : fail(field, "must be ports 1-65535 separated by commas or spaces", p))),
    oneOf<T extends string>(value: Field, field: string, allowed: readonly T[], fallback: T): T {
      const t = text(value);
      if (t === "") return fallback;
      if (!(allowed as readonly string[]).includes(t)) fail(field, `must be one of ${allowed.join(", ")}`, value);
      return t as T;
    },
  };
}
