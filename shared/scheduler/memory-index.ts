/**
 * Per hypervisor kind, the schedulable slots sorted by free memory (ascending). A demand finds the
 * first slot with enough memory by binary search and never visits the ones before it; a claim or a
 * release moves one slot a few places by insertion, with no allocation.
 */
export class MemoryIndex {
  /** Per kind: slots by free memory; only the first `len[kind]` entries are in use. */
  readonly order: Int32Array[];
  readonly len: number[];
  /** Each slot's position in its kind's `order`; -1 when the slot is not indexed. */
  readonly pos: Int32Array;
  private readonly mem: Float64Array;
  private readonly kind: Int32Array;

  /** An index over `slots` slots whose free memory and kind are read from the given arrays. */
  constructor(kinds: number, slots: number, mem: Float64Array, kind: Int32Array) {
    this.order = Array.from({ length: kinds }, () => new Int32Array(slots));
    this.len = new Array<number>(kinds).fill(0);
    this.pos = new Int32Array(slots).fill(-1);
    this.mem = mem;
    this.kind = kind;
  }

  /** Whether slot `i` is in the index. */
  has(i: number): boolean {
    return this.pos[i]! >= 0;
  }

  /** The first position in `kind`'s order whose slot has at least `memory` free. */
  lowerBound(kind: number, memory: number): number {
    const o = this.order[kind]!;
    let lo = 0;
    let hi = this.len[kind]!;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.mem[o[mid]!]! < memory) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  /** Indexes the given slots at once: sorting is cheaper than inserting them one by one. */
  build(slots: readonly number[]): void {
    const sorted = [...slots].sort((a, b) => this.mem[a]! - this.mem[b]! || a - b);
    for (const i of sorted) {
      const k = this.kind[i]!;
      const p = this.len[k]!;
      this.order[k]![p] = i;
      this.pos[i] = p;
      this.len[k] = p + 1;
    }
  }

  insert(i: number): void {
    const k = this.kind[i]!;
    const o = this.order[k]!;
    const p = this.len[k]!;
    this.len[k] = p + 1;
    o[p] = i;
    this.pos[i] = p;
    this.move(i);
  }

  delete(i: number): void {
    const k = this.kind[i]!;
    const o = this.order[k]!;
    const len = this.len[k]! - 1;
    for (let p = this.pos[i]!; p < len; p++) {
      o[p] = o[p + 1]!;
      this.pos[o[p]!] = p;
    }
    this.len[k] = len;
    this.pos[i] = -1;
  }

  /** Restores the order after slot `i`'s free memory changed: shifts it left or right by insertion. */
  move(i: number): void {
    const o = this.order[this.kind[i]!]!;
    const len = this.len[this.kind[i]!]!;
    const m = this.mem[i]!;
    let p = this.pos[i]!;
    // Strict comparisons: equal neighbours stay put, so a claim moves a slot as little as it can.
    while (p > 0 && this.mem[o[p - 1]!]! > m) {
      o[p] = o[p - 1]!;
      this.pos[o[p]!] = p;
      p--;
    }
    while (p < len - 1 && this.mem[o[p + 1]!]! < m) {
      o[p] = o[p + 1]!;
      this.pos[o[p]!] = p;
      p++;
    }
    o[p] = i;
    this.pos[i] = p;
  }
}
