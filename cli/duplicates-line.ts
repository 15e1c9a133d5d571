// How `rescale run`'s summary and the cluster status name the rows that copied an identical earlier document's result.

export function duplicatesLine(duplicates: number): string {
  return `${duplicates} identical text${duplicates === 1 ? '' : 's'} scored once`;
}
