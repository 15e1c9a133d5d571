// `rescale crowd`: a sample of documents, labelled by every labeller of the crowd config (local codebooks through
// the run path, closed models through the fallback stage), written as the crowd folder with the labellers'
// agreement. Labellers run one after another; a re-run re-scores the local ones and answers the closed ones from
// the cache.

import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import type { Codebook } from '../../contracts/codebook.js';
import { RescaleError } from '../../contracts/errors.js';
import { silentLogger, type Logger } from '../../contracts/logger.js';
import type { EndpointList } from '../../fallback/endpoint-list.js';
import type { BackoffOptions } from '../../fallback/retry-policy.js';
import { sha256OfFile } from '../../storage/complete-output.js';
import { closedProposals } from './closed-labeller.js';
import { questionAgreement, type QuestionAgreement } from './crowd-agreement.js';
import { loadCrowdConfig, type Labeller } from './crowd-config.js';
import {
  crowdLayout,
  writeAgreementJson,
  writeCrowdJson,
  writeDocuments,
  writeProposals,
  type CrowdLayout,
  type LabellerProposals,
} from './crowd-output.js';
import { drawCrowdSample, writeSampleParquet } from './crowd-sample.js';
import { localProposals, type LocalScoring } from './local-labeller.js';
import type { Proposal } from './proposal.js';

export interface CrowdRunOptions {
  readonly config: string;
  readonly out: string;
  /** The corpus to draw from, or the ready sample. */
  readonly input: string;
  readonly sample?: number | undefined;
  readonly seed?: number | undefined;
  /** Where closed labellers' env-var keys are looked up. */
  readonly env: Readonly<Record<string, string | undefined>>;
  /** For closed labellers that name an endpoint (`endpoint:`). */
  readonly endpoints?: EndpointList | null;
  /** Closed labellers answer from the cache only. */
  readonly offline?: boolean;
  readonly scoreLocal: LocalScoring;
  readonly logger?: Logger;
  readonly signal?: AbortSignal | undefined;
  /** Retry timing of closed labellers; tests make it small. */
  readonly backoff?: BackoffOptions;
  readonly now?: () => Date;
}

export interface LabellerSummary {
  readonly name: string;
  readonly kind: 'local' | 'closed';
  readonly proposals: number;
  readonly errors: number;
  /** Closed labellers: HTTP requests sent by this run, answers from the cache, cost of this run. */
  readonly requests: number | null;
  readonly cacheHits: number | null;
  readonly costUsd: number | null;
}

export interface CrowdRunSummary {
  readonly layout: CrowdLayout;
  readonly documents: number;
  readonly proposalRows: number;
  readonly labellers: readonly LabellerSummary[];
  readonly agreement: readonly QuestionAgreement[];
}

/** What crowd.json says about a labeller: its kind, model and strategy; never a key or its value. */
async function describeLabeller(labeller: Labeller, codebook: Codebook): Promise<Record<string, unknown>> {
  if (labeller.kind === 'local') {
    const own = labeller.codebook;
    return {
      name: labeller.name,
      kind: 'local',
      strategy: 'scored',
      codebook: { path: own.source, sha256: own.source === null ? null : await sha256OfFile(own.source) },
      model: { path: own.model.path, adapters: own.model.adapters.map((a) => ({ path: a.path, scale: a.scale })) },
    };
  }
  const { config } = labeller;
  return {
    name: labeller.name,
    kind: 'closed',
    strategy: labeller.strategy,
    model: config.model,
    endpoint: config.endpoint ?? config.baseUrl,
    ...(labeller.strategy === 'mapped'
      ? {
          fine_labels: Object.fromEntries(
            codebook.questions.map((q) => [
              q.name,
              (labeller.fineLabels.get(q.name) ?? []).map((l) => ({
                name: l.name,
                maps_to: l.mapsTo,
                ...(l.description !== null ? { description: l.description } : {}),
              })),
            ]),
          ),
        }
      : {}),
  };
}

export async function runCrowd(options: CrowdRunOptions): Promise<CrowdRunSummary> {
  const logger = options.logger ?? silentLogger;
  const config = await loadCrowdConfig(options.config);
  const { codebook } = config;
  const layout = crowdLayout(options.out);
  const input = path.resolve(options.input);
  if ([layout.documents, layout.proposals, layout.sample].includes(input)) {
    throw new RescaleError(
      'CONFIG_INVALID',
      `--input ${input} is a file the crowd writes into --out ${layout.dir}; copy the sample elsewhere or choose ` +
        'another --out',
    );
  }
  await mkdir(layout.dir, { recursive: true });
  const sample = await drawCrowdSample(config, {
    input: options.input,
    ...(options.sample !== undefined ? { n: options.sample } : {}),
    ...(options.seed !== undefined ? { seed: options.seed } : {}),
  });
  await writeSampleParquet(sample, layout.sample);
  logger.log('info', 'crowd sample drawn', { documents: sample.ids.length, stratifiedBy: sample.stratifiedBy });

  const results: LabellerProposals[] = [];
  const summaries: LabellerSummary[] = [];
  for (const [index, labeller] of config.labellers.entries()) {
    options.signal?.throwIfAborted();
    const dir = layout.labellerDir(labeller.name);
    await mkdir(dir, { recursive: true });
    let proposals: Proposal[][];
    let traffic: Pick<LabellerSummary, 'requests' | 'cacheHits' | 'costUsd'>;
    if (labeller.kind === 'local') {
      const request = {
        codebook: labeller.codebook,
        input: layout.sample,
        output: path.join(dir, 'results.parquet'),
        signal: options.signal,
      };
      proposals = await localProposals(labeller.name, request, options.scoreLocal, sample.ids.length);
      traffic = { requests: null, cacheHits: null, costUsd: null };
    } else {
      const answered = await closedProposals(labeller, `labellers[${index}]`, {
        codebook,
        sample,
        cacheDir: config.cacheDir ?? layout.fallbackCache,
        auditFile: path.join(dir, 'audit.jsonl'),
        env: options.env,
        endpoints: options.endpoints ?? null,
        offline: options.offline ?? false,
        logger,
        signal: options.signal,
        backoff: options.backoff,
      });
      proposals = answered.proposals;
      traffic = { requests: answered.requests, cacheHits: answered.cacheHits, costUsd: answered.costUsd };
    }
    const all = proposals.flat();
    summaries.push({
      name: labeller.name,
      kind: labeller.kind,
      proposals: all.length,
      errors: all.filter((p) => p.error !== null).length,
      ...traffic,
    });
    results.push({ name: labeller.name, proposals });
    logger.log('info', 'labeller done', { labeller: labeller.name, errors: summaries.at(-1)?.errors });
  }

  const names = results.map((r) => r.name);
  const agreement = codebook.questions.map((question, q) =>
    questionAgreement(
      question,
      names,
      results.map((r) => r.proposals[q] ?? []),
    ),
  );
  await writeDocuments(layout, codebook, sample);
  const proposalRows = await writeProposals(layout, codebook, sample, results);
  await writeAgreementJson(layout, agreement);
  await writeCrowdJson(layout, codebook, {
    codebook: {
      path: codebook.source ?? '',
      sha256: codebook.source === null ? '' : await sha256OfFile(codebook.source),
    },
    labellers: await Promise.all(config.labellers.map((l) => describeLabeller(l, codebook))),
    sample,
    createdAt: (options.now ?? (() => new Date()))().toISOString(),
  });
  return { layout, documents: sample.ids.length, proposalRows, labellers: summaries, agreement };
}
