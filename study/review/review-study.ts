// A review study as `rescale evaluate --review` and `rescale report --review` take it: the review database and the
// crowd folder it reviews, found from one path (the study folder holding review.db and crowd/, or the database
// file with crowd/ beside it; --crowd names the crowd folder when it lives elsewhere).

import { existsSync, statSync } from 'node:fs';
import path from 'node:path';
import { RescaleError } from '../../contracts/errors.js';
import { readCrowdFolder, type CrowdFolder } from './crowd-folder.js';
import { formatReviewStats, reviewStats, type ReviewStats } from './review-stats.js';
import { ReviewStore } from './review-store.js';

/** The file names a study folder holds, as docs/review.md lays a study out. */
export const REVIEW_DB_FILE = 'review.db';
export const CROWD_FOLDER = 'crowd';

export interface ReviewStudyPaths {
  readonly db: string;
  readonly crowd: string;
}

/** The review measures of one study, as written by `rescale evaluate --review --json`. */
export interface ReviewEvaluation extends ReviewStats {
  readonly kind: 'rescale.review-evaluation';
  readonly version: 1;
  readonly db: string;
  readonly crowd: string;
}

const isDirectory = (p: string): boolean => existsSync(p) && statSync(p).isDirectory();

/** Where the database and the crowd folder are; every failure names `option` and says what to pass. */
export function locateReviewStudy(target: string, crowd?: string, option = '--review'): ReviewStudyPaths {
  const absolute = path.resolve(target);
  const what = `pass the study folder (holding ${REVIEW_DB_FILE} and ${CROWD_FOLDER}/) or the review database file`;
  if (!existsSync(absolute)) throw new RescaleError('INPUT_NOT_FOUND', `${option} ${absolute} does not exist; ${what}`);
  let db: string;
  let defaultCrowd: string;
  if (statSync(absolute).isDirectory()) {
    db = path.join(absolute, REVIEW_DB_FILE);
    if (!existsSync(db))
      throw new RescaleError(
        'INPUT_INVALID',
        `${option} ${absolute} is not a review study: it has no ${REVIEW_DB_FILE}; ${what}`,
      );
    // A crowd folder that holds its review database is its own study folder.
    defaultCrowd = existsSync(path.join(absolute, 'crowd.json')) ? absolute : path.join(absolute, CROWD_FOLDER);
  } else {
    db = absolute;
    defaultCrowd = path.join(path.dirname(absolute), CROWD_FOLDER);
  }
  if (crowd !== undefined) return { db, crowd: path.resolve(crowd) };
  if (!isDirectory(defaultCrowd) || !existsSync(path.join(defaultCrowd, 'crowd.json')))
    throw new RescaleError(
      'INPUT_NOT_FOUND',
      `${option} ${absolute}: no crowd folder at ${defaultCrowd} (with crowd.json); pass --crowd DIR, the folder ` +
        '"rescale crowd --out" wrote',
    );
  return { db, crowd: defaultCrowd };
}

/** Opens the study and checks the database reviews this crowd folder. The caller closes the store. */
export async function openReviewStudy(
  target: string,
  crowdDir?: string,
  option = '--review',
): Promise<{ paths: ReviewStudyPaths; crowd: CrowdFolder; store: ReviewStore }> {
  const paths = locateReviewStudy(target, crowdDir, option);
  const crowd = await readCrowdFolder(paths.crowd);
  const store = ReviewStore.open(paths.db, option, { mustExist: true });
  const foreign =
    store.allAssignments().find((a) => !crowd.byId.has(a.document))?.document ??
    store.current().find((d) => !crowd.byId.has(d.document))?.document;
  if (foreign !== undefined) {
    store.close();
    throw new RescaleError(
      'INPUT_INVALID',
      `${option} ${paths.db} reviews document "${foreign}", which the crowd folder ${paths.crowd} does not hold; ` +
        'pass --crowd with the folder the review was assigned from',
    );
  }
  return { paths, crowd, store };
}

/** The review measures (study/review/review-stats.ts) of a study, with where they came from. */
export async function evaluateReview(
  target: string,
  crowdDir?: string,
  option = '--review',
): Promise<ReviewEvaluation> {
  const { paths, crowd, store } = await openReviewStudy(target, crowdDir, option);
  try {
    return {
      kind: 'rescale.review-evaluation',
      version: 1,
      db: paths.db,
      crowd: paths.crowd,
      ...reviewStats(crowd, store),
    };
  } finally {
    store.close();
  }
}

/** The printed form: where the figures come from, then the tables of `rescale review stats`. */
export function formatReviewEvaluation(evaluation: ReviewEvaluation): string {
  return `human review: ${evaluation.db} (crowd ${evaluation.crowd})\n${formatReviewStats(evaluation)}`;
}
