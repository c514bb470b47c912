import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { assertSafeToken, assertUuid, commandLine, shellQuote, UnsafeArgumentError } from "./quote.ts";

// Real shells parse the quoted line: what they hand to printf must be exactly the original bytes.
const shells = ["/bin/sh", "/bin/bash", "/bin/dash", "/usr/bin/zsh"].filter((s) => existsSync(s));

/** Runs `printf '%s\0' <args>` through `shell -c <commandLine>` and returns the arguments it saw. */
function roundTrip(shell: string, args: string[], allowNewlines = false): string[] {
  const line = commandLine(["printf", "%s\\0", ...args], { allowNewlines });
  const r = spawnSync(shell, ["-c", line], { encoding: "buffer" });
  expect(r.status, `${shell} failed: ${r.stderr.toString()}`).toBe(0);
  const parts = r.stdout.toString("utf8").split("\0");
  parts.pop(); // after the last NUL
  return parts;
}

const hostile = [
  "",
  " ",
  "'",
  "''",
  "'\\''",
  '"',
  "\\",
  "\\'",
  "$(reboot)",
  "`reboot`",
  // biome-ignore lint/suspicious/noTemplateCurlyInString: a literal shell expansion is the point
  "${IFS}",
  "$HOME",
  "$'\\x41'",
  "a;b",
  "a && b || c",
  "a|b",
  "a>b",
  "<a",
  "&",
  "#comment",
  "~root",
  "*",
  "?",
  "[a-z]",
  "{a,b}",
  "!",
  "!!",
  "-n",
  "--help",
  "-e",
  "=cmd",
  "A=b",
  "%1",
  "\t",
  "a\tb",
  "\x01\x02\x1b[31m\x7f",
  "é ü 中文 🚀",
  "\u00ff\u00fe",
  "  leading and trailing  ",
  "it's a 'test'",
  "x'\"$`\\!*?[]{}()<>|&;#~ ",
];

describe("shellQuote", () => {
  it.each(shells)("round-trips hostile arguments through %s", (shell) => {
    expect(roundTrip(shell, hostile)).toEqual(hostile);
  });

  it.each(shells)("round-trips each hostile argument alone through %s", (shell) => {
    for (const arg of hostile) expect(roundTrip(shell, [arg])).toEqual([arg]);
  });

  it.each(shells)("round-trips random strings of every byte 1..255 through %s", (shell) => {
    let seed = 42;
    const rnd = () => {
      seed = (seed * 1103515245 + 12345) & 0x7fffffff;
      return seed;
    };
    const args = Array.from({ length: 200 }, () =>
      Array.from({ length: rnd() % 24 }, () => String.fromCharCode(1 + (rnd() % 255))).join(""),
    );
    expect(roundTrip(shell, args, true)).toEqual(args);
  });

  it("round-trips newlines when allowed", () => {
    const args = ["a\nb", "\n", "\r\n'\n"];
    for (const shell of shells) expect(roundTrip(shell, args, true)).toEqual(args);
  });

  it("refuses NUL bytes always and line breaks by default", () => {
    expect(() => shellQuote("a\0b")).toThrow(UnsafeArgumentError);
    expect(() => shellQuote("a\0b", { allowNewlines: true })).toThrow(/NUL/);
    expect(() => shellQuote("a\nb")).toThrow(/line break/);
    expect(() => shellQuote("a\rb")).toThrow(/line break/);
    expect(shellQuote("a\nb", { allowNewlines: true })).toBe("'a\nb'");
  });

  it("quotes exactly as documented", () => {
    expect(shellQuote("")).toBe("''");
    expect(shellQuote("'")).toBe("''\\'''");
    expect(shellQuote("virsh")).toBe("virsh");
    expect(shellQuote("qemu:///system")).toBe("qemu:///system");
    expect(shellQuote("A=b")).toBe("'A=b'");
    expect(shellQuote("a b")).toBe("'a b'");
    expect(commandLine(["virsh", "-c", "qemu:///system", "start", "a b"])).toBe(
      "virsh -c qemu:///system start 'a b'",
    );
  });

  it("refuses an empty argv or program", () => {
    expect(() => commandLine([])).toThrow(UnsafeArgumentError);
    expect(() => commandLine(["", "x"])).toThrow(UnsafeArgumentError);
  });
});

describe("validators", () => {
  it("assertUuid accepts UUIDs only", () => {
    const id = "0b6d9c1e-2f3a-4b5c-8d7e-9f0a1b2c3d4e";
    expect(assertUuid(id)).toBe(id);
    expect(assertUuid(id.toUpperCase())).toBe(id.toUpperCase());
    for (const bad of ["", "3", "--help", `${id} `, `${id}\n`, `-${id.slice(1)}`, "$(reboot)", `${id}x`]) {
      expect(() => assertUuid(bad, "vmId")).toThrow(/vmId is not a UUID/);
    }
  });

  it("assertSafeToken accepts plain names", () => {
    for (const ok of ["vm-1", "debian-12", "web.example.com", "pool/disk:1", "a+b=c", "root@host", "0x1"]) {
      expect(assertSafeToken(ok)).toBe(ok);
    }
  });

  it("assertSafeToken refuses options, domain ids and shell syntax", () => {
    const bad = [
      "",
      "3",
      "007",
      "-x",
      "--help",
      "$(reboot)",
      "a b",
      "a;b",
      "`x`",
      "a'b",
      "é",
      "a\nb",
      "x".repeat(256),
    ];
    for (const b of bad) expect(() => assertSafeToken(b, "name")).toThrow(UnsafeArgumentError);
    expect(() => assertSafeToken("--help", "name")).toThrow(/name starts with '-'/);
    expect(() => assertSafeToken("3", "name")).toThrow(/all digits/);
  });
});
