// `rescale crowd`: wires node-llama-cpp's local run into the crowd (local labellers score the sample through the same
// run path as `rescale run`), and prints what each labeller did and how far the labellers agree.

import type { LlamaBuild } from '../contracts/environment.js';
import { RescaleError } from '../contracts/errors.js';
import type { Logger } from '../contracts/logger.js';
import { EndpointList } from '../fallback/endpoint-list.js';
import type { CrowdRunSummary } from '../study/crowd/crowd-run.js';
import { runCrowd } from '../study/crowd/crowd-run.js';
import type { LocalScoring } from '../study/crowd/local-labeller.js';
import { formatTable } from '../study/text-table.js';
import { runLocalMode } from './local-mode.js';

export interface CrowdCommandOptions {
  readonly config: string;
  readonly input: string;
  readonly out: string;
  readonly sample?: number | undefined;
  readonly seed?: number | undefined;
  readonly endpoints?: string | undefined;
  readonly offline: boolean;
  readonly env: Readonly<Record<string, string | undefined>>;
  readonly build: LlamaBuild;
  readonly logger: Logger;
  readonly signal?: AbortSignal | undefined;
}

/** A local labeller's run: `rescale run` over the sample with the labeller's codebook, fallback off. */
export function localScoring(
  env: Readonly<Record<string, string | undefined>>,
  logger: Logger,
  build: LlamaBuild,
): LocalScoring {
  return async (request) => {
    if (request.codebook.source === null) {
      throw new RescaleError('INTERNAL', 'a local labeller’s codebook must come from a file');
    }
    // The sample file is rewritten on every crowd run, so an earlier run of the labeller is replaced, not resumed.
    await runLocalMode(
      {
        codebook: request.codebook.source,
        input: [request.input],
        output: request.output,
        overwrite: true,
        noFallback: true,
        env,
        logger,
        signal: request.signal,
      },
      build,
    );
  };
}

export async function crowdCommand(options: CrowdCommandOptions): Promise<CrowdRunSummary> {
  const endpoints = options.endpoints === undefined ? null : await EndpointList.load(options.endpoints);
  return runCrowd({
    config: options.config,
    input: options.input,
    out: options.out,
    sample: options.sample,
    seed: options.seed,
    env: options.env,
    endpoints,
    offline: options.offline,
    scoreLocal: localScoring(options.env, options.logger, options.build),
    logger: options.logger,
    signal: options.signal,
  });
}

const figure = (x: number | null): string => (x === null ? '—' : x.toFixed(3));

export function formatCrowd(summary: CrowdRunSummary): string {
  const out: string[] = [];
  out.push(`${summary.documents} documents, ${summary.labellers.length} labellers, ${summary.proposalRows} proposals`);
  out.push(
    '',
    formatTable(
      ['labeller', 'kind', 'proposals', 'errors', 'requests', 'from cache', 'cost $'],
      summary.labellers.map((l) => [
        l.name,
        l.kind,
        String(l.proposals),
        String(l.errors),
        l.requests === null ? '' : String(l.requests),
        l.cacheHits === null ? '' : String(l.cacheHits),
        l.costUsd === null ? '' : l.costUsd.toFixed(4),
      ]),
    ),
  );
  for (const a of summary.agreement) {
    if (a.perLabelAlpha !== undefined) {
      out.push(
        '',
        `question ${a.question} (multi-label): Krippendorff's alpha per label over the labellers' yes/no ` +
          `judgements, mean ${figure(a.krippendorffAlpha.value)}; ${a.disagreements} of ${a.documents} documents ` +
          'with different label sets',
        formatTable(
          ['label', "Krippendorff's alpha"],
          a.perLabelAlpha.map((p) => [p.label, figure(p.alpha)]),
        ),
      );
      continue;
    }
    out.push(
      '',
      `question ${a.question}: Fleiss' kappa ${figure(a.fleissKappa)} (${a.completeDocuments} documents every ` +
        `labeller labelled), Krippendorff's alpha (${a.krippendorffAlpha.level}) ` +
        `${figure(a.krippendorffAlpha.value)}, ` +
        `${a.disagreements} of ${a.documents} documents with disagreement`,
      formatTable(
        ['pair', 'documents', "Cohen's kappa"],
        a.pairwiseCohenKappa.map((p) => [`${p.a} × ${p.b}`, String(p.documents), figure(p.kappa)]),
      ),
    );
  }
  out.push('', `wrote ${summary.layout.dir}/ (documents.parquet, proposals.parquet, crowd.json, agreement.json)`);
  return out.join('\n') + '\n';
}
