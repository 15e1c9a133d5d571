// The review app's HTML, rendered on the server: plain forms that work without JavaScript, plus one small inline
// script (allowed by a per-response CSP nonce) for the keyboard: a accept, r reject, 1-9 pick a label, n next, u undo.

import { randomBytes } from 'node:crypto';
import { groupProposals, type CrowdDocument, type CrowdQuestion } from './crowd-folder.js';
import type { CurrentDecision, Reviewer } from './review-store.js';
import type { QueueItem, ReviewerProgress } from './review-state.js';

export function escapeHtml(value: string): string {
  return value.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

/** A fresh key per rendered form: posting the same form twice records one decision. */
function formKey(): string {
  return randomBytes(12).toString('base64url');
}

const STYLE = `
body{font:16px/1.45 system-ui,sans-serif;margin:0;color:#1d2330;background:#f6f7f9}
header{display:flex;gap:1rem;align-items:center;padding:.6rem 1.2rem;background:#1d2330;color:#fff}
header .who{margin-left:auto}
header a.home{color:#fff;text-decoration:none}header form{margin:0}header button{font-size:.8rem}
main{max-width:60rem;margin:1rem auto;padding:0 1rem}
.text{background:#fff;border:1px solid #d5d9e0;border-radius:6px;padding:1rem 1.2rem;white-space:pre-wrap;
  font-size:1.1rem}
section.question{background:#fff;border:1px solid #d5d9e0;border-radius:6px;padding:.6rem 1.2rem;margin-top:1rem}
section.question.active{border-color:#2f6fde;box-shadow:0 0 0 2px #2f6fde33}
.state{font-size:.9rem;color:#555}.state b{color:#1d2330}
.proposal{display:flex;gap:.6rem;align-items:center;padding:.35rem 0;border-top:1px solid #eef0f3}
.proposal .labels{font-weight:600;min-width:9rem}.proposal .by{color:#555;font-size:.9rem;flex:1}
form.inline{display:inline;margin:0}
button{font:inherit;padding:.2rem .7rem;border:1px solid #9aa3b2;border-radius:4px;background:#fff;cursor:pointer}
button.accept{border-color:#2a8a4a;color:#1d6b37}button.reject{border-color:#b33;color:#a22}
.picks{display:grid;grid-template-columns:repeat(auto-fill,minmax(16rem,1fr));gap:.4rem;margin:.5rem 0}
.picks button{width:100%;text-align:left}.picks small{display:block;color:#666;font-size:.8rem}
nav.actions{display:flex;gap:.8rem;margin:1rem 0}
kbd{border:1px solid #bbb;border-radius:3px;padding:0 .25rem;font-size:.8rem}
table{border-collapse:collapse;background:#fff}td,th{border:1px solid #d5d9e0;padding:.25rem .6rem;text-align:left}
.done{color:#1d6b37}.open{color:#a60}.coders{font-size:.9rem;color:#444}
`;

// Keys act on the first question still open on the page (or the first question); a form field keeps its own keys.
const SCRIPT = `
document.addEventListener('keydown', function (e) {
  if (e.ctrlKey || e.metaKey || e.altKey) return;
  var t = e.target; if (t && (t.tagName === 'INPUT' || t.tagName === 'TEXTAREA' || t.tagName === 'SELECT')) return;
  var q = document.querySelector('section.question.active') || document.querySelector('section.question');
  var click = function (sel, root) {
    var b = (root || document).querySelector(sel);
    if (b) { e.preventDefault(); b.click(); }
  };
  if (e.key === 'a' && q) click('button[data-action="accept"]', q);
  else if (e.key === 'r' && q) click('button[data-action="reject"]', q);
  else if (/^[1-9]$/.test(e.key) && q) click('button[data-pick="' + e.key + '"]', q);
  else if (e.key === 'n') click('a#next');
  else if (e.key === 'u') click('button#undo');
});
`;

export function page(title: string, nonce: string, body: string, header = ''): string {
  return (
    `<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" ` +
    `content="width=device-width,initial-scale=1"><title>${escapeHtml(title)}</title>` +
    `<style nonce="${nonce}">${STYLE}</style></head><body>${header}<main>${body}</main>` +
    `<script nonce="${nonce}">${SCRIPT}</script></body></html>`
  );
}

export function headerBar(reviewer: Reviewer, csrf: string, progress: { done: number; assigned: number }): string {
  return (
    `<header><a class="home" href="/"><b>rescale review</b></a>` +
    `<span id="progress">${progress.done} / ${progress.assigned} done</span>` +
    `<span class="who">${escapeHtml(reviewer.name)} (${reviewer.role})</span>` +
    `<form method="post" action="/logout"><input type="hidden" name="csrf" value="${escapeHtml(csrf)}">` +
    `<button>Log out</button></form></header>`
  );
}

export function messagePage(title: string, message: string, nonce: string): string {
  return page(title, nonce, `<h1>${escapeHtml(title)}</h1><p>${escapeHtml(message)}</p>`);
}

export function queuePage(
  reviewer: Reviewer,
  csrf: string,
  queue: readonly QueueItem[],
  progress: readonly ReviewerProgress[],
  nonce: string,
): string {
  const mine = { done: queue.filter((q) => q.done).length, assigned: queue.length };
  const next = queue.find((q) => !q.done);
  const rows = queue
    .map(
      (q) =>
        `<tr><td><a href="/doc/${encodeURIComponent(q.document)}">${escapeHtml(q.document)}</a></td>` +
        `<td class="${q.done ? 'done' : 'open'}">${q.done ? 'done' : 'open'}</td></tr>`,
    )
    .join('');
  const team = progress
    .map((p) => `<tr><td>${escapeHtml(p.name)}</td><td>${p.role}</td><td>${p.done} / ${p.assigned}</td></tr>`)
    .join('');
  const body =
    (next
      ? `<p><a id="next" href="/doc/${encodeURIComponent(next.document)}">Start with the next open document</a> ` +
        `(<kbd>n</kbd>)</p>`
      : `<p>${queue.length === 0 ? 'Nothing to review yet.' : 'All your documents are done.'}</p>`) +
    `<h2>Your documents</h2><table><tr><th>document</th><th>state</th></tr>${rows}</table>` +
    `<h2>Progress</h2><table id="team"><tr><th>reviewer</th><th>role</th><th>done</th></tr>${team}</table>`;
  return page('rescale review', nonce, body, headerBar(reviewer, csrf, mine));
}

function labelText(labels: readonly string[]): string {
  return labels.length > 0 ? labels.map(escapeHtml).join(', ') : '(no label)';
}

function describe(decision: CurrentDecision | undefined): string {
  if (decision === undefined) return '<span class="open">open</span>';
  const labels = labelText(decision.labels);
  const verb = decision.decision === 'accept' ? 'accepted' : decision.decision === 'reject' ? 'rejected' : 'picked';
  return `<b>${verb}</b>: ${labels}`;
}

function hidden(fields: Readonly<Record<string, string>>, labels: readonly string[]): string {
  return (
    Object.entries(fields)
      .map(([k, v]) => `<input type="hidden" name="${k}" value="${escapeHtml(v)}">`)
      .join('') + labels.map((l) => `<input type="hidden" name="label" value="${escapeHtml(l)}">`).join('')
  );
}

export interface DocumentView {
  readonly reviewer: Reviewer;
  readonly csrf: string;
  readonly document: CrowdDocument;
  readonly questions: readonly CrowdQuestion[];
  readonly mine: ReadonlyMap<string, CurrentDecision>;
  /** For an adjudicator: what each coder decided. */
  readonly coders: readonly { readonly name: string; readonly decisions: ReadonlyMap<string, CurrentDecision> }[];
  readonly progress: { done: number; assigned: number };
  readonly nextHref: string;
}

export function documentPage(view: DocumentView, nonce: string): string {
  const { csrf, document } = view;
  const active = view.questions.find((q) => !view.mine.has(q.name)) ?? view.questions[0];
  const sections = view.questions.map((q) => {
    const base = { csrf, document: document.id, question: q.name };
    const form = (decision: string, labels: readonly string[], button: string): string =>
      `<form class="inline" method="post" action="/decide">${hidden({ ...base, key: formKey(), decision }, labels)}` +
      `${button}</form>`;
    const groups = groupProposals(document.proposals.get(q.name) ?? []);
    const proposals = groups
      .map((g, i) => {
        const by = g.by
          .map((b) => `${escapeHtml(b.labeller)}${b.probability === null ? '' : ` (p=${b.probability.toFixed(2)})`}`)
          .join(', ');
        const first = i === 0 ? ' data-action' : ' data-other';
        return (
          `<div class="proposal"><span class="labels">${labelText(g.labels)}</span>` +
          `<span class="by">proposed by ${by}</span>` +
          form(
            'accept',
            g.labels,
            `<button class="accept"${first}="accept">Accept${i === 0 ? ' <kbd>a</kbd>' : ''}</button>`,
          ) +
          form(
            'reject',
            g.labels,
            `<button class="reject"${first}="reject">Reject${i === 0 ? ' <kbd>r</kbd>' : ''}</button>`,
          ) +
          `</div>`
        );
      })
      .join('');
    const failed = (document.proposals.get(q.name) ?? []).filter((p) => p.error !== null);
    const failures =
      failed.length > 0
        ? `<p class="state">no proposal from ` +
          `${failed.map((p) => `${escapeHtml(p.labeller)} (${escapeHtml(p.error ?? '')})`).join(', ')}</p>`
        : '';
    const picks =
      q.type === 'single_label'
        ? `<div class="picks">${q.labels
            .map((l, i) =>
              form(
                'pick',
                [l.name],
                `<button${i < 9 ? ` data-pick="${i + 1}"` : ''}>${i < 9 ? `<kbd>${i + 1}</kbd> ` : ''}` +
                  `${escapeHtml(l.name)}${l.description ? `<small>${escapeHtml(l.description)}</small>` : ''}</button>`,
              ),
            )
            .join('')}</div>`
        : `<form method="post" action="/decide">${hidden({ ...base, key: formKey(), decision: 'pick' }, [])}` +
          `<div class="picks">${q.labels
            .map(
              (l) =>
                `<label><input type="checkbox" name="label" value="${escapeHtml(l.name)}"` +
                `${view.mine.get(q.name)?.labels.includes(l.name) ? ' checked' : ''}> ` +
                `${escapeHtml(l.name)}${l.description ? `<small>${escapeHtml(l.description)}</small>` : ''}</label>`,
            )
            .join('')}</div><button>Set these labels</button></form>`;
    const coders = view.coders.map((c) => `${escapeHtml(c.name)}: ${describe(c.decisions.get(q.name))}`).join(' · ');
    return (
      `<section class="question${q === active ? ' active' : ''}" data-question="${escapeHtml(q.name)}">` +
      `<h2>${escapeHtml(q.name)}</h2><p class="state">Your decision: ${describe(view.mine.get(q.name))}</p>` +
      (coders ? `<p class="coders">Coders — ${coders}</p>` : '') +
      `${proposals}${failures}<p class="state">Or pick the right label${q.type === 'multi_label' ? 's' : ''}:</p>` +
      `${picks}</section>`
    );
  });
  const body =
    `<p class="state">Document <b id="doc-id">${escapeHtml(document.id)}</b></p>` +
    `<div class="text" id="text">${escapeHtml(document.text)}</div>${sections.join('')}` +
    `<nav class="actions"><a id="next" href="${escapeHtml(view.nextHref)}">Next document <kbd>n</kbd></a>` +
    `<form class="inline" method="post" action="/undo">${hidden({ csrf, key: formKey() }, [])}` +
    `<button id="undo">Undo last decision <kbd>u</kbd></button></form></nav>`;
  return page(`Review ${document.id}`, nonce, body, headerBar(view.reviewer, csrf, view.progress));
}
