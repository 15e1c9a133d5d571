// Distances between label sets for Krippendorff's alpha on set-valued (multi-label) data: Jaccard distance and MASI
// (Passonneau 2006), both with NLTK's definitions so an alpha can be re-checked with
// nltk.metrics.agreement.AnnotationTask(distance=masi_distance).alpha().

export type SetDistance = 'masi' | 'jaccard';

function overlap<T>(a: ReadonlySet<T>, b: ReadonlySet<T>): { intersection: number; union: number } {
  let intersection = 0;
  for (const x of a) if (b.has(x)) intersection++;
  return { intersection, union: a.size + b.size - intersection };
}

/** 1 − |A∩B| / |A∪B|; 0 for two empty sets (equal sets, where NLTK divides by zero). */
export function jaccardDistance<T>(a: ReadonlySet<T>, b: ReadonlySet<T>): number {
  const { intersection, union } = overlap(a, b);
  return union === 0 ? 0 : 1 - intersection / union;
}

/**
 * MASI distance 1 − J·M, J the Jaccard similarity and M the monotonicity weight: 1 for equal sets, 0.67 when one set
 * holds the other, 0.33 when they only overlap, 0 when disjoint. NLTK's constants (Passonneau writes 2/3 and 1/3) so
 * the figures match NLTK's; 0 for two empty sets, 1 for an empty set against a non-empty one.
 */
export function masiDistance<T>(a: ReadonlySet<T>, b: ReadonlySet<T>): number {
  const { intersection, union } = overlap(a, b);
  if (union === 0) return 0;
  let m: number;
  if (a.size === b.size && intersection === a.size) m = 1;
  else if (intersection === Math.min(a.size, b.size)) m = 0.67;
  else if (intersection > 0) m = 0.33;
  else m = 0;
  return 1 - (intersection / union) * m;
}

export function setDistance(kind: SetDistance): <T>(a: ReadonlySet<T>, b: ReadonlySet<T>) => number {
  return kind === 'masi' ? masiDistance : jaccardDistance;
}
