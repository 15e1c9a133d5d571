// The review web app (Fastify): token login to an HttpOnly SameSite=Strict session cookie, a CSRF token checked on
// every POST, a reviewer sees only their own documents (403 otherwise), and request logs hold the route pattern,
// never a document id, text or token.

import { randomBytes, timingSafeEqual } from 'node:crypto';
import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import { errorMessage } from '../../contracts/errors.js';
import type { Logger } from '../../contracts/logger.js';
import type { CrowdFolder } from './crowd-folder.js';
import { documentPage, messagePage, queuePage } from './review-pages.js';
import { ReviewState } from './review-state.js';
import type { DecisionKind, Reviewer, ReviewStore } from './review-store.js';

export const SESSION_COOKIE = 'rescale_review';

export interface ReviewServerOptions {
  readonly store: ReviewStore;
  readonly crowd: CrowdFolder;
  readonly logger: Logger;
}

interface Session {
  readonly id: string;
  readonly reviewer: Reviewer;
  readonly csrf: string;
}

type Form = URLSearchParams;

function cookie(request: FastifyRequest, name: string): string | undefined {
  for (const part of (request.headers.cookie ?? '').split(';')) {
    const [k, ...v] = part.trim().split('=');
    if (k === name) return decodeURIComponent(v.join('='));
  }
  return undefined;
}

function sameSecret(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}

/** Builds the app (not listening); `app.listen` or `app.inject` drive it. */
export function createReviewServer(options: ReviewServerOptions): FastifyInstance {
  const { store, crowd, logger } = options;
  const app = Fastify({ logger: false, bodyLimit: 64 * 1024 });
  const nonces = new WeakMap<FastifyRequest, string>();
  const nonceOf = (request: FastifyRequest): string => {
    let nonce = nonces.get(request);
    if (nonce === undefined) {
      nonce = randomBytes(16).toString('base64');
      nonces.set(request, nonce);
    }
    return nonce;
  };

  app.addContentTypeParser('application/x-www-form-urlencoded', { parseAs: 'string' }, (_request, body, done) => {
    done(null, new URLSearchParams(body as string));
  });

  app.addHook('onSend', async (request, reply) => {
    reply.header(
      'content-security-policy',
      `default-src 'none'; style-src 'nonce-${nonceOf(request)}'; script-src 'nonce-${nonceOf(request)}'; ` +
        "form-action 'self'; base-uri 'none'; frame-ancestors 'none'",
    );
    reply.header('referrer-policy', 'no-referrer');
    reply.header('x-content-type-options', 'nosniff');
    reply.header('cache-control', 'no-store');
  });
  app.addHook('onResponse', async (request, reply) => {
    logger.log('info', 'request', {
      method: request.method,
      route: request.routeOptions.url ?? 'unmatched',
      status: reply.statusCode,
      ms: Math.round(reply.elapsedTime),
    });
  });
  app.setErrorHandler(async (error, request, reply) => {
    const status = (error as { statusCode?: number }).statusCode ?? 500;
    const message = errorMessage(error);
    if (status >= 500) logger.log('error', 'request failed', { route: request.routeOptions.url, error: message });
    return reply
      .code(status)
      .type('text/html')
      .send(messagePage('Error', status >= 500 ? 'The server could not do that.' : message, nonceOf(request)));
  });

  const html = (_request: FastifyRequest, reply: FastifyReply, status: number, body: string): FastifyReply =>
    reply.code(status).type('text/html; charset=utf-8').send(body);

  const session = (request: FastifyRequest): Session | null => {
    const id = cookie(request, SESSION_COOKIE);
    if (id === undefined || id === '') return null;
    const found = store.session(id);
    return found === null ? null : { id, ...found };
  };

  const needSession = (request: FastifyRequest, reply: FastifyReply): Session | null => {
    const s = session(request);
    if (s === null)
      void html(request, reply, 401, messagePage('Log in', 'Open the login link you were given.', nonceOf(request)));
    return s;
  };

  /** A POST's session, after checking its CSRF field; null when a 401 or 403 has been sent. */
  const postSession = (request: FastifyRequest, reply: FastifyReply): { s: Session; form: Form } | null => {
    const s = needSession(request, reply);
    if (s === null) return null;
    const form = request.body instanceof URLSearchParams ? request.body : new URLSearchParams();
    if (!sameSecret(form.get('csrf') ?? '', s.csrf)) {
      void html(request, reply, 403, messagePage('Forbidden', 'The form is stale; reload the page.', nonceOf(request)));
      return null;
    }
    return { s, form };
  };

  const nextOpen = (state: ReviewState, reviewer: Reviewer, after: string | null): string => {
    const queue = state.queue(reviewer);
    const from = after === null ? -1 : queue.findIndex((q) => q.document === after);
    const open = [...queue.slice(from + 1), ...queue.slice(0, from + 1)].find((q) => !q.done && q.document !== after);
    return open === undefined ? '/' : `/doc/${encodeURIComponent(open.document)}`;
  };

  app.get('/login', async (request, reply) => {
    const token = (request.query as { token?: unknown }).token;
    const reviewer = typeof token === 'string' && token !== '' ? store.reviewerByToken(token) : null;
    if (reviewer === null)
      return html(request, reply, 401, messagePage('Not logged in', 'That login link is not valid.', nonceOf(request)));
    const { sessionId } = store.createSession(reviewer.id);
    reply.header('set-cookie', `${SESSION_COOKIE}=${sessionId}; HttpOnly; SameSite=Strict; Path=/`);
    // A page, not a redirect: a SameSite=Strict cookie set while following a link from elsewhere is only sent on
    // the next same-site navigation.
    return html(
      request,
      reply,
      200,
      `<!doctype html><meta http-equiv="refresh" content="0;url=/"><p>Logged in as ` +
        `${reviewer.name.replace(/[<&]/g, '')}. <a href="/">Continue</a></p>`,
    );
  });

  app.get('/', async (request, reply) => {
    const s = needSession(request, reply);
    if (s === null) return reply;
    const state = new ReviewState(store, crowd);
    return html(
      request,
      reply,
      200,
      queuePage(s.reviewer, s.csrf, state.queue(s.reviewer), state.progress(), nonceOf(request)),
    );
  });

  app.get('/next', async (request, reply) => {
    const s = needSession(request, reply);
    if (s === null) return reply;
    const after = (request.query as { after?: unknown }).after;
    return reply.redirect(
      nextOpen(new ReviewState(store, crowd), s.reviewer, typeof after === 'string' ? after : null),
      303,
    );
  });

  app.get('/doc/:id', async (request, reply) => {
    const s = needSession(request, reply);
    if (s === null) return reply;
    const id = (request.params as { id: string }).id;
    const state = new ReviewState(store, crowd);
    const document = crowd.byId.get(id);
    if (document === undefined || !state.canSee(s.reviewer, id))
      return html(
        request,
        reply,
        403,
        messagePage('Forbidden', 'This document is not in your queue.', nonceOf(request)),
      );
    const queue = state.queue(s.reviewer);
    const view = {
      reviewer: s.reviewer,
      csrf: s.csrf,
      document,
      questions: crowd.questions,
      mine: state.decisionsOf(s.reviewer.id, id),
      coders:
        s.reviewer.role === 'adjudicator'
          ? state.coderDecisions(id).map((c) => ({ name: c.reviewer.name, decisions: c.decisions }))
          : [],
      progress: { done: queue.filter((q) => q.done).length, assigned: queue.length },
      nextHref: `/next?after=${encodeURIComponent(id)}`,
    };
    return html(request, reply, 200, documentPage(view, nonceOf(request)));
  });

  app.post('/decide', async (request, reply) => {
    const posted = postSession(request, reply);
    if (posted === null) return reply;
    const { s, form } = posted;
    const document = form.get('document') ?? '';
    const question = crowd.questions.find((q) => q.name === form.get('question'));
    const decision = form.get('decision') as DecisionKind | null;
    const key = form.get('key') ?? '';
    const labels = form.getAll('label');
    const state = new ReviewState(store, crowd);
    if (!crowd.byId.has(document) || !state.canSee(s.reviewer, document))
      return html(
        request,
        reply,
        403,
        messagePage('Forbidden', 'This document is not in your queue.', nonceOf(request)),
      );
    const known = new Set(question?.labels.map((l) => l.name));
    if (
      question === undefined ||
      decision === null ||
      !['accept', 'reject', 'pick'].includes(decision) ||
      key === '' ||
      labels.some((l) => !known.has(l)) ||
      (question.type === 'single_label' && decision !== 'reject' && labels.length !== 1)
    )
      return html(
        request,
        reply,
        400,
        messagePage('Bad request', 'The form is incomplete; reload the page.', nonceOf(request)),
      );
    store.decide({ reviewerId: s.reviewer.id, key, document, question: question.name, decision, labels });
    const after = new ReviewState(store, crowd);
    const open = crowd.questions.some((q) => !after.decisionsOf(s.reviewer.id, document).has(q.name));
    return reply.redirect(open ? `/doc/${encodeURIComponent(document)}` : nextOpen(after, s.reviewer, document), 303);
  });

  app.post('/undo', async (request, reply) => {
    const posted = postSession(request, reply);
    if (posted === null) return reply;
    const key = posted.form.get('key') ?? '';
    if (key === '')
      return html(
        request,
        reply,
        400,
        messagePage('Bad request', 'The form is incomplete; reload the page.', nonceOf(request)),
      );
    const undone = store.undoLast(posted.s.reviewer.id, key);
    return reply.redirect(undone === null ? '/' : `/doc/${encodeURIComponent(undone.document)}`, 303);
  });

  app.post('/logout', async (request, reply) => {
    const posted = postSession(request, reply);
    if (posted === null) return reply;
    store.endSession(posted.s.id);
    reply.header('set-cookie', `${SESSION_COOKIE}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0`);
    return html(request, reply, 200, messagePage('Logged out', 'Open your login link to come back.', nonceOf(request)));
  });

  return app;
}
