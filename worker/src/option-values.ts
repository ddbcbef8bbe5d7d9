/**
 * Parsers of numeric option values, shared by populus-worker and populus:
 * each refuses anything but its range with a message naming the option.
 */
import { InvalidArgumentError } from "commander";

/** A whole number from `min` to `max`. */
export function intInRange(name: string, min: number, max: number) {
  return (value: string): number => {
    const n = Number(value);
    if (!/^\d+$/.test(value.trim()) || !Number.isSafeInteger(n) || n < min || n > max) {
      throw new InvalidArgumentError(`${name} must be a whole number from ${min} to ${max}, got "${value}"`);
    }
    return n;
  };
}

/** A number of seconds (fractions allowed) from `min` to `max`. */
export function secondsInRange(name: string, min: number, max: number) {
  return (value: string): number => {
    const n = Number(value);
    if (value.trim() === "" || !Number.isFinite(n) || n < min || n > max) {
      throw new InvalidArgumentError(`${name} must be a number of seconds from ${min} to ${max}, got "${value}"`);
    }
    return n;
  };
}
