// splitbrain-lab: which machine the current notebook acts on, in the status bar, and the Slaves
// panel, both fed by the kernel's `splitbrain` comm (see model.ts).

import {
  JupyterFrontEnd,
  JupyterFrontEndPlugin
} from '@jupyterlab/application';
import { INotebookTracker, NotebookPanel } from '@jupyterlab/notebook';
import { Kernel } from '@jupyterlab/services';
import { IStatusBar } from '@jupyterlab/statusbar';

import { KernelLink } from './model';
import { ActiveSlaveItem, SlavesPanel } from './widgets';

const OPEN_PANEL = 'splitbrain:open-slaves-panel';

// One link per kernel, shared by the notebooks that use it.
class Links {
  get(kernel: Kernel.IKernelConnection): KernelLink {
    let link = this._links.get(kernel.id);
    if (!link || link.kernel !== kernel) {
      link?.dispose();
      link = new KernelLink(kernel);
      this._links.set(kernel.id, link);
      kernel.disposed.connect(() => {
        if (this._links.get(kernel.id) === link) {
          this._links.delete(kernel.id);
          link?.dispose();
        }
      });
    }
    return link;
  }

  private _links = new Map<string, KernelLink>();
}

const plugin: JupyterFrontEndPlugin<void> = {
  id: 'splitbrain-lab:plugin',
  description: 'Shows the active splitbrain slave and lists the slaves of the notebook kernel.',
  autoStart: true,
  requires: [INotebookTracker],
  optional: [IStatusBar],
  activate: (
    app: JupyterFrontEnd,
    notebooks: INotebookTracker,
    statusBar: IStatusBar | null
  ) => {
    const links = new Links();
    const panel = new SlavesPanel();
    app.shell.add(panel, 'left', { rank: 950 });

    app.commands.addCommand(OPEN_PANEL, {
      label: 'Show the splitbrain Slaves panel',
      execute: () => app.shell.activateById(panel.id)
    });

    const item = new ActiveSlaveItem(() => void app.commands.execute(OPEN_PANEL));
    if (statusBar) {
      statusBar.registerStatusItem('splitbrain-lab:active-slave', {
        item,
        align: 'left',
        rank: 4,
        isActive: () => item.isActive,
        activeStateChanged: item.activeStateChanged
      });
    }

    // The notebook whose kernel the status item and the panel show.
    let watched: NotebookPanel | null = null;

    const show = () => {
      const kernel = watched?.sessionContext.session?.kernel ?? null;
      const link = kernel ? links.get(kernel) : null;
      item.link = link;
      panel.link = link;
      panel.notebookName = watched ? watched.context.localPath : null;
    };

    const onKernelChanged = () => show();

    const watch = (notebook: NotebookPanel | null) => {
      if (watched === notebook) {
        return;
      }
      watched?.sessionContext.kernelChanged.disconnect(onKernelChanged);
      watched = notebook;
      watched?.sessionContext.kernelChanged.connect(onKernelChanged);
      if (watched) {
        void watched.sessionContext.ready.then(() => {
          if (watched === notebook) {
            show();
          }
        });
      }
      show();
    };

    notebooks.currentChanged.connect((_, notebook) => watch(notebook));
    watch(notebooks.currentWidget);
  }
};

export default plugin;
