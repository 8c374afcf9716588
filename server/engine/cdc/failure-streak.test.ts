// The same failure over and over, without progress, for long enough fails the movement; a blip,
// a different failure or progress in between starts over.
import { describe, expect, it } from "vitest";
import { FAIL_AFTER_ATTEMPTS, FAIL_AFTER_MS, FailureStreak, failureKey } from "./failure-streak";

const refused = () =>
  Object.assign(new Error('new row for relation "notes" violates check constraint "no_poison"'), {
    code: "23514",
  });

describe("FailureStreak", () => {
  it("fails after enough attempts over enough time, of the same failure", () => {
    const streak = new FailureStreak();
    const step = FAIL_AFTER_MS / (FAIL_AFTER_ATTEMPTS - 1);
    for (let i = 0; i < FAIL_AFTER_ATTEMPTS - 1; i++) expect(streak.failed(refused(), i * step)).toBe(false);
    expect(streak.failed(refused(), FAIL_AFTER_MS)).toBe(true);
  });

  it("needs the time as well as the attempts: a quick burst of restarts is a blip", () => {
    const streak = new FailureStreak();
    for (let i = 0; i < FAIL_AFTER_ATTEMPTS * 3; i++) expect(streak.failed(refused(), i)).toBe(false);
  });

  it("starts over after progress or a different failure", () => {
    const streak = new FailureStreak();
    for (let i = 0; i < FAIL_AFTER_ATTEMPTS; i++) streak.failed(refused(), 0);
    streak.reset();
    expect(streak.failed(refused(), FAIL_AFTER_MS)).toBe(false);
    expect(streak.failed(new Error("connect ECONNREFUSED 127.0.0.1:5432"), FAIL_AFTER_MS * 2)).toBe(false);
    expect(streak.attempts).toBe(1);
  });

  it("treats failures that differ only in numbers as the same", () => {
    expect(failureKey(new Error("slot in use by pid 1234 at 0/16B3748"))).toBe(
      failureKey(new Error("slot in use by pid 99 at 1/A0")),
    );
  });
});
