// What the kernel's `splitbrain` comm says, and one notebook kernel's link to it.
//
// The kernel (splitbrain_kernel/comm.py) sends its whole state when the comm opens and again
// whenever it changes: after `%slave NAME`, around `%%slave` cells, after connect, forget, spawn
// and close, and after any cell that changed what `%slaves` would show. Nothing here polls.

import { Kernel, KernelMessage } from '@jupyterlab/services';
import { ISignal, Signal } from '@lumino/signaling';

export const COMM_TARGET = 'splitbrain';

export interface ISlaveRow {
  name: string;
  address: string | null;
  platform: string | null;
  python: string | null;
  latency: number | null;
  state: string;
  log: string[];
  log_source: string | null;
  // The leases on its agent as `%slaves` shows them (null: not known); resource '' is the whole slave.
  leases?: ILease[] | null;
}

export interface ILease {
  resource: string;
  name?: string | null;
  holder: string;
  shared: boolean;
  since: number;
  until: number | null;
  mine: boolean;
}

export interface IActive {
  // "local", "sticky" (`%slave NAME`) or "cell" (a running `%%slave` cell).
  mode: 'local' | 'sticky' | 'cell';
  names: string[];
}

export interface IState {
  active: IActive;
  slaves: ISlaveRow[];
  // The last action's outcome, for the panel: "connected bench-c at tcp://…" or an error.
  message?: { action: string; ok: boolean; text: string } | null;
}

// "local", "bench-a (sticky)", "bench-a, bench-b (cell)".
export function describeActive(active: IActive): string {
  if (active.mode === 'local' || active.names.length === 0) {
    return 'local';
  }
  return `${active.names.join(', ')} (${active.mode})`;
}

// A slave the kernel cannot reach is "down": its agent stopped answering, or its session is gone.
export function isDown(state: string): boolean {
  return state === 'unreachable' || state === 'session lost';
}

// The comm to one kernel. Re-opened after a restart: the kernel's comms die with its process.
export class KernelLink {
  constructor(kernel: Kernel.IKernelConnection) {
    this.kernel = kernel;
    kernel.statusChanged.connect(this._onStatus, this);
    this._open();
  }

  readonly kernel: Kernel.IKernelConnection;

  get state(): IState | null {
    return this._state;
  }

  get changed(): ISignal<this, IState | null> {
    return this._changed;
  }

  send(data: { action: string; [key: string]: string }): void {
    if (this._comm && !this._comm.isDisposed) {
      this._comm.send(data);
    }
  }

  dispose(): void {
    this.kernel.statusChanged.disconnect(this._onStatus, this);
    this._close();
    Signal.clearData(this);
  }

  private _open(): void {
    if (this.kernel.isDisposed) {
      return;
    }
    const comm = this.kernel.createComm(COMM_TARGET);
    comm.onMsg = (msg: KernelMessage.ICommMsgMsg) => {
      this._state = msg.content.data as unknown as IState;
      this._changed.emit(this._state);
    };
    comm.onClose = () => {
      // A kernel without the target (not splitbrain) closes it at once; so does a dying kernel.
      if (this._comm === comm) {
        this._comm = null;
        this._refused = this._state === null;
        this._state = null;
        this._changed.emit(null);
      }
    };
    this._comm = comm;
    comm.open({});
  }

  private _close(): void {
    const comm = this._comm;
    this._comm = null;
    if (comm && !comm.isDisposed) {
      comm.dispose();
    }
  }

  private _onStatus(_: Kernel.IKernelConnection, status: Kernel.Status): void {
    if (status === 'restarting' || status === 'autorestarting' || status === 'dead') {
      this._close();
      this._refused = false;
      this._state = null;
      this._changed.emit(null);
    } else if (status === 'idle' && this._comm === null && !this._refused) {
      this._open();
    }
  }

  private _comm: Kernel.IComm | null = null;
  private _state: IState | null = null;
  // The kernel closed the comm before saying anything: it has no such target. Not asked again
  // until it restarts.
  private _refused = false;
  private _changed = new Signal<this, IState | null>(this);
}
