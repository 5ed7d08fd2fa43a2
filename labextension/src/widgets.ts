// The status-bar item (the active slave) and the Slaves side panel. Both render a KernelLink's
// state as the kernel last sent it; their actions go back over the same comm.

import { LabIcon } from '@jupyterlab/ui-components';
import { ISignal, Signal } from '@lumino/signaling';
import { Widget } from '@lumino/widgets';

import { ILease, IState, ISlaveRow, KernelLink, describeActive, isDown } from './model';

const slavesIcon = new LabIcon({
  name: 'splitbrain-lab:slaves',
  svgstr:
    '<svg xmlns="http://www.w3.org/2000/svg" width="16" height="16" viewBox="0 0 24 24">' +
    '<g class="jp-icon3" fill="#616161">' +
    '<rect x="2" y="3" width="9" height="7" rx="1"/><rect x="13" y="3" width="9" height="7" rx="1"/>' +
    '<rect x="7.5" y="14" width="9" height="7" rx="1"/>' +
    '<path d="M6 10h1.5v2H12v2h-1v-1H7.5v-1H6zM16.5 10H18v2h-1.5v1H13v1h-1v-2h4.5z"/></g></svg>'
});

function element<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  className: string,
  text?: string
): HTMLElementTagNameMap[K] {
  const node = document.createElement(tag);
  if (className) {
    node.className = className;
  }
  if (text !== undefined) {
    node.textContent = text;
  }
  return node;
}

// Follows one KernelLink at a time and re-renders when it changes.
abstract class LinkView extends Widget {
  get link(): KernelLink | null {
    return this._link;
  }

  set link(link: KernelLink | null) {
    if (this._link === link) {
      return;
    }
    this._link?.changed.disconnect(this._onChanged, this);
    this._link = link;
    this._link?.changed.connect(this._onChanged, this);
    this.render();
  }

  protected get state(): IState | null {
    return this._link?.state ?? null;
  }

  protected abstract render(): void;

  private _onChanged(): void {
    this.render();
  }

  private _link: KernelLink | null = null;
}

// "slave: local", "slave: bench-a (sticky)", "slave: bench-a (cell)" while a `%%slave` cell runs.
export class ActiveSlaveItem extends LinkView {
  constructor(onClick: () => void) {
    super();
    this.addClass('jp-splitbrain-ActiveSlave');
    this.node.title = 'The machine this notebook acts on (splitbrain); click for the Slaves panel';
    this.node.appendChild(element('span', 'jp-splitbrain-ActiveSlave-label', 'slave:'));
    this._name = this.node.appendChild(element('span', 'jp-splitbrain-ActiveSlave-name'));
    this.node.addEventListener('click', onClick);
    this.render();
  }

  // Shown only for a kernel that answers the comm (a splitbrain kernel).
  get isActive(): boolean {
    return this.state !== null;
  }

  get activeStateChanged(): ISignal<this, void> {
    return this._activeStateChanged;
  }

  protected render(): void {
    const state = this.state;
    const text = state ? describeActive(state.active) : '';
    this._name.textContent = text;
    this.node.dataset.mode = state ? state.active.mode : 'none';
    if (this._wasActive !== this.isActive) {
      this._wasActive = this.isActive;
      this._activeStateChanged.emit();
    }
  }

  private _name: HTMLSpanElement;
  private _wasActive = false;
  private _activeStateChanged = new Signal<this, void>(this);
}

function latencyText(latency: number | null): string {
  return typeof latency === 'number' ? `${(latency * 1e3).toFixed(2)} ms` : '';
}

// "leased: ASRL/dev/ttyUSB0 by alice@lab-pc (yours, until 12:02)": who holds what on that agent.
function leaseText(lease: ILease): string {
  const what = lease.resource === '' ? 'the whole slave' : lease.name ? `${lease.name} (${lease.resource})` : lease.resource;
  const notes = [lease.mine ? 'yours' : '', lease.shared ? 'shared' : ''];
  if (lease.until !== null) {
    notes.push(`until ${new Date(lease.until * 1000).toTimeString().slice(0, 5)}`);
  }
  const said = notes.filter(note => note).join(', ');
  return `leased: ${what} by ${lease.holder}${said ? ` (${said})` : ''}`;
}

function stateText(state: string): string {
  return isDown(state) ? `down (${state})` : state;
}

// The known and connected slaves of the current notebook's kernel, with connect, forget and spawn.
export class SlavesPanel extends LinkView {
  constructor() {
    super();
    this.id = 'splitbrain-slaves';
    this.addClass('jp-splitbrain-SlavesPanel');
    this.title.icon = slavesIcon;
    this.title.caption = 'Slaves (splitbrain)';
    this.render();
  }

  set notebookName(name: string | null) {
    if (this._notebookName !== name) {
      this._notebookName = name;
      this.render();
    }
  }

  protected render(): void {
    // The form is built once and kept, so a state arriving while someone types keeps the focus.
    const form = this._formNode ?? (this._formNode = this._form());
    const content = this._content ?? (this._content = element('div', 'jp-splitbrain-SlavesPanel-content'));
    const status = this._status ?? (this._status = element('p', 'jp-splitbrain-SlavesPanel-message'));
    if (content.parentNode !== this.node) {
      this.node.append(element('h2', 'jp-splitbrain-SlavesPanel-title', 'Slaves'), content, form, status);
    }
    content.replaceChildren();
    const state = this.state;
    form.hidden = !state;
    status.className = 'jp-splitbrain-SlavesPanel-message';
    status.textContent = '';
    if (!this.link || !state) {
      content.appendChild(
        element(
          'p',
          'jp-splitbrain-SlavesPanel-empty',
          this._notebookName
            ? `The kernel of ${this._notebookName} is not a splitbrain kernel, or is not running.`
            : 'Open a notebook with the splitbrain kernel.'
        )
      );
      return;
    }
    const header = content.appendChild(element('div', 'jp-splitbrain-SlavesPanel-header'));
    header.appendChild(
      element('span', 'jp-splitbrain-SlavesPanel-active', `active: ${describeActive(state.active)}`)
    );
    const refresh = header.appendChild(
      element('button', 'jp-Button jp-mod-styled jp-splitbrain-refresh', 'Refresh')
    );
    refresh.title = 'Ping every connected slave';
    refresh.addEventListener('click', () => this._act({ action: 'refresh' }, 'pinging…'));

    const list = content.appendChild(element('div', 'jp-splitbrain-SlavesPanel-list'));
    for (const row of state.slaves) {
      this._row(list, row);
    }
    if (state.slaves.length === 0) {
      content.appendChild(element('p', 'jp-splitbrain-SlavesPanel-empty', 'No slaves yet.'));
    }
    for (const row of state.slaves) {
      if (row.log.length) {
        const log = content.appendChild(element('details', 'jp-splitbrain-log'));
        log.dataset.slave = row.name;
        log.open = this._openLogs.has(row.name);
        log.addEventListener('toggle', () => {
          if (log.open) {
            this._openLogs.add(row.name);
          } else {
            this._openLogs.delete(row.name);
          }
        });
        log.appendChild(element('summary', '', `${row.name}: agent log (${row.log_source ?? ''})`));
        log.appendChild(element('pre', '', row.log.join('\n')));
      }
    }
    const message = state.message;
    if (this._pending) {
      status.textContent = this._pending;
    } else if (message) {
      status.textContent = message.text;
      status.classList.add(message.ok ? 'jp-mod-ok' : 'jp-mod-error');
    }
  }

  // One slave: name, state and actions on the first line; address, then platform, Python and
  // latency below (a side panel is narrow).
  private _row(list: HTMLElement, row: ISlaveRow): void {
    const card = list.appendChild(element('div', 'jp-splitbrain-slave'));
    card.dataset.slave = row.name;
    card.dataset.state = row.state;
    if (isDown(row.state)) {
      card.classList.add('jp-mod-down');
    }
    const top = card.appendChild(element('div', 'jp-splitbrain-slave-head'));
    top.appendChild(element('span', 'jp-splitbrain-slave-name', row.name));
    top.appendChild(element('span', 'jp-splitbrain-slave-state', stateText(row.state)));
    const actions = top.appendChild(element('span', 'jp-splitbrain-slave-actions'));
    if (row.state !== 'connected') {
      const connect = actions.appendChild(element('button', 'jp-Button jp-mod-styled jp-splitbrain-connect', 'connect'));
      connect.addEventListener('click', () =>
        this._act({ action: 'connect', name: row.name }, `connecting ${row.name}…`)
      );
    }
    const forget = actions.appendChild(element('button', 'jp-Button jp-mod-styled jp-splitbrain-forget', 'forget'));
    forget.title = `Close ${row.name} and remove it from the registry`;
    forget.addEventListener('click', () =>
      this._act({ action: 'forget', name: row.name }, `forgetting ${row.name}…`)
    );
    card.appendChild(element('div', 'jp-splitbrain-slave-address', row.address ?? ''));
    const facts = [row.platform, row.python ? `Python ${row.python}` : null, latencyText(row.latency)];
    const details = facts.filter(fact => fact).join(' · ');
    if (details) {
      card.appendChild(element('div', 'jp-splitbrain-slave-details', details));
    }
    for (const lease of row.leases ?? []) {
      const line = card.appendChild(element('div', 'jp-splitbrain-lease', leaseText(lease)));
      line.dataset.resource = lease.resource;
      line.dataset.holder = lease.holder;
    }
  }

  private _form(): HTMLFormElement {
    const form = element('form', 'jp-splitbrain-SlavesPanel-form');
    const name = form.appendChild(element('input', 'jp-mod-styled jp-splitbrain-new-name'));
    name.placeholder = 'name';
    const target = form.appendChild(element('input', 'jp-mod-styled jp-splitbrain-new-target'));
    target.placeholder = 'tcp://host:port?key=… or connection file';
    const connect = form.appendChild(element('button', 'jp-Button jp-mod-styled jp-splitbrain-add', 'Connect'));
    connect.type = 'submit';
    connect.title = 'Connect the address and register it under the name';
    const spawn = form.appendChild(element('button', 'jp-Button jp-mod-styled jp-splitbrain-spawn', 'Spawn'));
    spawn.type = 'button';
    spawn.title = 'Start a private agent on the kernel machine under the name';
    form.addEventListener('submit', event => {
      event.preventDefault();
      const n = name.value.trim();
      this._act({ action: 'connect', name: n, target: target.value.trim() }, `connecting ${n}…`);
    });
    spawn.addEventListener('click', () => {
      const n = name.value.trim();
      this._act({ action: 'spawn', name: n }, `spawning ${n}…`);
    });
    return form;
  }

  private _act(data: { action: string; [key: string]: string }, pending: string): void {
    const link = this.link;
    if (!link) {
      return;
    }
    this._pending = pending;
    this.render();
    const done = () => {
      link.changed.disconnect(done);
      this._pending = '';
      this.render();
    };
    link.changed.connect(done);
    link.send(data);
  }

  private _notebookName: string | null = null;
  private _pending = '';
  private _openLogs = new Set<string>();
  private _content: HTMLDivElement | null = null;
  private _formNode: HTMLFormElement | null = null;
  private _status: HTMLParagraphElement | null = null;
}
