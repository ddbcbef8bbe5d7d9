/**
 * Lease tokens (server/src/store/row-mapping.ts): a token is a batch prefix of 32 lowercase hex
 * digits, a dash and the job id in base 36, and leaseJobId reads the id back by hand. Pinned
 * against the regular expression and parseInt it replaced, on tokens made by leaseToken and on
 * malformed and random ones.
 */
import { randomBytes, randomInt } from "node:crypto";
import test from "ava";
import { leaseJobId, leaseToken } from "../server/dist/store/row-mapping.js";

/** What leaseJobId answered before it was written by hand. */
const byExpression = (token: string) => {
  const m = /^[0-9a-f]{32}-([0-9a-z]{1,11})$/.exec(token);
  return m === null ? -1 : parseInt(m[1] as string, 36);
};

const PREFIX = "0123456789abcdef0123456789abcdef";

test("the id of every token leaseToken makes comes back, from 1 to the largest safe integer", (t) => {
  const ids = [1, 9, 10, 35, 36, 1295, 1296, 2 ** 31, 2 ** 32 + 7, 36 ** 10 - 1, Number.MAX_SAFE_INTEGER];
  for (let i = 0; i < 2000; i++) ids.push(randomInt(1, 2 ** 47));
  for (const id of ids) {
    const token = leaseToken(randomBytes(16).toString("hex"), id);
    t.is(leaseJobId(token), id, token);
  }
});

test("a malformed token has no id (-1), as the expression said", (t) => {
  const malformed = [
    "",
    "-1",
    `${PREFIX}-`,
    `${PREFIX}1`,
    `${PREFIX}_1`,
    `${PREFIX.toUpperCase()}-1`,
    `${PREFIX.slice(1)}-1`,
    `${PREFIX}0-1`,
    `${PREFIX}-1A`,
    `${PREFIX}-1-`,
    `${PREFIX}-zzzzzzzzzzzz`,
    `${PREFIX}-é`,
    `${PREFIX}- 1`,
    `${PREFIX.slice(0, 31)}g-1`,
    `${PREFIX}-1\n`,
  ];
  for (const token of malformed) {
    t.is(leaseJobId(token), -1, JSON.stringify(token));
    t.is(byExpression(token), -1, JSON.stringify(token));
  }
});

test("on random strings of token shape and of random characters, the hand reading and the expression agree", (t) => {
  const alphabet = "0123456789abcdefghijklmnopqrstuvwxyzABCDEF-_ é";
  const pick = (n: number) => Array.from({ length: n }, () => alphabet[randomInt(alphabet.length)]).join("");
  for (let i = 0; i < 20_000; i++) {
    const token = i % 2 === 0 ? `${randomBytes(16).toString("hex")}-${pick(randomInt(0, 13))}` : pick(randomInt(0, 50));
    const expected = byExpression(token);
    // Past 2^53 both are rounded, each its own way: such an id names no row either way.
    if (expected > Number.MAX_SAFE_INTEGER) t.true(leaseJobId(token) > Number.MAX_SAFE_INTEGER, token);
    else t.is(leaseJobId(token), expected, JSON.stringify(token));
  }
});
