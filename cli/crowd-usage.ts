// The help text of `rescale crowd`, kept apart so `rescale --help` does not load the crowd's modules.

export const CROWD_USAGE = `  rescale crowd --config crowd.yaml --input P --out DIR [--sample N --seed S] [options]
      Several labellers (local codebooks, closed models) propose labels for a sample; writes DIR/documents.parquet,
      proposals.parquet, crowd.json and agreement.json (Fleiss' kappa, Krippendorff's alpha, pairwise Cohen's kappa).
        --sample N --seed S   draw N documents of P (stratified by the truth column when P has one); default: all of P
        --endpoints FILE      the endpoint list, for closed labellers that name one with "endpoint:"
        --offline             closed labellers answer from the response cache only (no key, no network)
`;
