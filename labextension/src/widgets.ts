// The status-bar item (the active slave) and the Slaves side panel. Both render a KernelLink's
// state as the kernel last sent it; their actions go back over the same comm.

import { LabIcon } from '@jupyterlab/ui-components';
import { ISignal, Signal } from '@lumino/signaling';
import { Widget } from '@lumino/widgets';

import { IState, ISlaveRow, KernelLink, describeActive, isDown } from './model';

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
    const node = this.node;
    node.replaceChildren();
    node.appendChild(element('h2', 'jp-splitbrain-SlavesPanel-title', 'Slaves'));
    const state = this.state;
    if (!this.link || !state) {
      node.appendChild(
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
    const header = node.appendChild(element('div', 'jp-splitbrain-SlavesPanel-header'));
    header.appendChild(
      element('span', 'jp-splitbrain-SlavesPanel-active', `active: ${describeActive(state.active)}`)
    );
    const refresh = header.appendChild(
      element('button', 'jp-Button jp-mod-styled jp-splitbrain-refresh', 'Refresh')
    );
    refresh.title = 'Ping every connected slave';
    refresh.addEventListener('click', () => this._act({ action: 'refresh' }, 'pinging…'));

    const table = node.appendChild(element('table', 'jp-splitbrain-SlavesPanel-table'));
    const head = table.appendChild(element('tr', ''));
    for (const column of ['name', 'address', 'platform', 'Python', 'latency', 'state', '']) {
      head.appendChild(element('th', '', column));
    }
    for (const row of state.slaves) {
      this._row(table, row);
    }
    if (state.slaves.length === 0) {
      node.appendChild(element('p', 'jp-splitbrain-SlavesPanel-empty', 'No slaves yet.'));
    }
    for (const row of state.slaves) {
      if (row.log.length) {
        const log = node.appendChild(element('details', 'jp-splitbrain-log'));
        log.dataset.slave = row.name;
        log.appendChild(element('summary', '', `${row.name}: agent log (${row.log_source ?? ''})`));
        log.appendChild(element('pre', '', row.log.join('\n')));
      }
    }
    this._form(node);
    const message = state.message;
    const status = node.appendChild(element('p', 'jp-splitbrain-SlavesPanel-message'));
    if (this._pending) {
      status.textContent = this._pending;
    } else if (message) {
      status.textContent = message.text;
      status.classList.add(message.ok ? 'jp-mod-ok' : 'jp-mod-error');
    }
  }

  private _row(table: HTMLTableElement, row: ISlaveRow): void {
    const tr = table.appendChild(element('tr', 'jp-splitbrain-slave'));
    tr.dataset.slave = row.name;
    tr.dataset.state = row.state;
    if (isDown(row.state)) {
      tr.classList.add('jp-mod-down');
    }
    const cells = [
      row.name,
      row.address ?? '',
      row.platform ?? '',
      row.python ?? '',
      latencyText(row.latency),
      stateText(row.state)
    ];
    cells.forEach((text, i) => {
      const td = tr.appendChild(element('td', '', text));
      if (i === 5) {
        td.className = 'jp-splitbrain-slave-state';
      }
    });
    const actions = tr.appendChild(element('td', 'jp-splitbrain-slave-actions'));
    if (row.state !== 'connected') {
      const connect = actions.appendChild(element('button', 'jp-splitbrain-connect', 'connect'));
      connect.addEventListener('click', () =>
        this._act({ action: 'connect', name: row.name }, `connecting ${row.name}…`)
      );
    }
    const forget = actions.appendChild(element('button', 'jp-splitbrain-forget', 'forget'));
    forget.title = `Close ${row.name} and remove it from the registry`;
    forget.addEventListener('click', () =>
      this._act({ action: 'forget', name: row.name }, `forgetting ${row.name}…`)
    );
  }

  private _form(node: HTMLElement): void {
    const form = node.appendChild(element('form', 'jp-splitbrain-SlavesPanel-form'));
    const name = form.appendChild(element('input', 'jp-mod-styled jp-splitbrain-new-name'));
    name.placeholder = 'name';
    name.value = this._draftName;
    name.addEventListener('input', () => (this._draftName = name.value));
    const target = form.appendChild(element('input', 'jp-mod-styled jp-splitbrain-new-target'));
    target.placeholder = 'tcp://host:port?key=… or connection file';
    target.value = this._draftTarget;
    target.addEventListener('input', () => (this._draftTarget = target.value));
    const connect = form.appendChild(element('button', 'jp-Button jp-mod-styled jp-splitbrain-add', 'Connect'));
    connect.type = 'submit';
    connect.title = 'Connect the address and register it under the name';
    const spawn = form.appendChild(element('button', 'jp-Button jp-mod-styled jp-splitbrain-spawn', 'Spawn'));
    spawn.type = 'button';
    spawn.title = 'Start a private agent on the kernel machine under the name';
    form.addEventListener('submit', event => {
      event.preventDefault();
      this._act({ action: 'connect', name: name.value.trim(), target: target.value.trim() },
                `connecting ${name.value.trim()}…`);
    });
    spawn.addEventListener('click', () =>
      this._act({ action: 'spawn', name: name.value.trim() }, `spawning ${name.value.trim()}…`)
    );
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
  private _draftName = '';
  private _draftTarget = '';
}
