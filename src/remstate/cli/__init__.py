"""The ``remstate`` command: the manager's operations for workflow steps and operators.

Output is plain text for people or JSON (``-o json``) for machines. The
global options (``-o/--output``, ``-s/--store``, ``-n/--namespace``,
``--kubeconfig``, ``--context``, ``--max-iterations``, ``--timeout``) go
before or after the command: ``remstate increment 42 -o json`` and
``remstate -o json increment 42`` are the same step. Every
failure prints one readable line on stderr and exits with a documented code,
so a workflow step can branch on it without parsing text:

    0  success
    1  an unexpected error (a bug of remstate's, or a store failure it cannot classify)
    2  bad input or usage (an empty --store too), or the store refused the request
       as invalid (an object too large, a bad name or selector); nothing was written
    3  not found: the task has no state (or the embedded store's file does not exist)
    4  max iterations reached; nothing was written
    5  another writer got in first: conflicts outlasted the retry policy (other
       writers kept winning), or the store answered Conflict, AlreadyExists or
       Gone; nothing was written; run the step again
    6  the store is unavailable (refused, timed out, 5xx) until the timeout ran out;
       for the embedded store, its file cannot be opened; for Kubernetes, no
       configuration can be loaded (a missing or broken kubeconfig, and not a pod)
    7  forbidden: RBAC or authentication refused the request, or the embedded
       store's file is read-only for this process; nothing was written
    8  the stored state is corrupt or inconsistent, or written by a newer remstate
       (so is the embedded store's file: not a database, damaged, or laid out by a
       newer one); nothing was written
    9  outcome unknown: a write was sent, its answer never came before the timeout
       ran out, and it may have committed; read the state (or repeat the step with
       the same --id) before doing it again
   10  the server cannot carry the request out until an operator acts (for
       example etcd's database is full); retrying will not help
   11  validation found problems (``validate``), or some remain after a repair
       (``recover``); the report says which, and whether a repair fixes them

``import`` reads on past a bad line: it exits 2 if any line was invalid (each
reported with its number, nothing written for it), else 5 if a state in the
store differed and was left as it is (no ``--overwrite``), after printing
what it created, skipped and overwrote. ``export`` exports every state it can
and exits with the code of the first task it could not (3: no state).

Which store a command uses, the first rule that applies:

1. ``--store URL``, else the REMSTATE_STORE variable: ``sqlite:///path.db``
   or ``kubernetes://NAMESPACE`` (``kubernetes://`` alone: the namespace below);
2. Kubernetes, when ``--kubeconfig`` (REMSTATE_KUBECONFIG), ``--context``
   (REMSTATE_CONTEXT) or ``-n/--namespace`` (REMSTATE_NAMESPACE) is given, or
   when the command runs as the kubectl plugin (``kubectl remstate ...``,
   installed as ``kubectl-remstate``);
3. else the embedded store, ``$XDG_DATA_HOME/remstate/state.db``
   (``~/.local/share/remstate/state.db``), created on the first write.

A KUBECONFIG variable alone does not select Kubernetes: rule 3 stays the
default on a laptop whose shell has one. On Kubernetes, as kubectl does: the
kubeconfig is ``--kubeconfig``, else KUBECONFIG, else ``~/.kube/config``, with
``--context`` or its current context; when neither option is given and no
kubeconfig loads, the pod's service account (in-cluster). The namespace is
the URL's, else ``-n``, else the context's (in a pod, the pod's), else
``default``; a URL and ``-n`` naming two different namespaces is an error
(exit 2). With an embedded store, ``-n`` is the namespace inside the file,
and ``--kubeconfig`` and ``--context`` are ignored.

How long a command waits for an unavailable store: reads (``get``, ``feedback
list``) give up after 10 seconds, writes after 30, unless ``--timeout`` says
otherwise. No single request outlasts that: connect and read timeouts are
capped at what is left of it.

Commands that only read (``get``, ``feedback list``) open the embedded store
read-only and never create it; ``delete`` and ``feedback resolve`` need an
existing file; only the commands that add state create the file and its
directory.
"""

from __future__ import annotations

import sys

import typer

from remstate.cli import cleanup as _cleanup  # noqa: F401 - registers `remstate cleanup`, `restore`
from remstate.cli import listing as _listing  # noqa: F401 - registers `remstate ls`, `init`
from remstate.cli import policy as _policy  # noqa: F401 - registers `remstate policy` on app
from remstate.cli import recovery as _recovery  # noqa: F401 - registers its commands on app
from remstate.cli import serve as _serve  # noqa: F401 - registers `remstate serve` on app
from remstate.cli import transfer as _transfer  # noqa: F401 - registers `export`, `import`
from remstate.cli import watch as _watch  # noqa: F401 - registers `remstate watch`
from remstate.cli.commands import app
from remstate.cli.exits import EXIT_CODES, Exit, describe, exit_code, one_line
from remstate.cli.options import DEFAULT_DB, GlobalOptions
from remstate.errors import RemstateError

__all__ = ["DEFAULT_DB", "EXIT_CODES", "Exit", "app", "exit_code", "kubectl_main", "main"]


def main(argv: list[str] | None = None, *, plugin: bool = False) -> int:
    """Run the CLI; return the exit code (errors are one line on stderr).

    ``plugin``: run as ``kubectl remstate`` (Kubernetes is the default store).
    """
    args = sys.argv[1:] if argv is None else list(argv)
    try:
        returned = app(
            args=args,
            prog_name="kubectl remstate" if plugin else "remstate",
            standalone_mode=False,
            obj=GlobalOptions(plugin=plugin),
        )
        if isinstance(returned, int) and returned:
            return returned  # click returns a typer.Exit's code when not standalone
    except RemstateError as e:
        typer.echo(f"remstate: {describe(e)}", err=True)
        return exit_code(e)
    except typer.Abort:
        typer.echo("remstate: aborted", err=True)
        return Exit.ERROR
    except typer.TyperException as e:
        # Usage errors (a missing argument, an unknown option, a bad value).
        # With no arguments at all, rich has already printed the help and the
        # message is empty: still say what went wrong, on one line.
        message = one_line(e.format_message()) or "missing command; see remstate --help"
        typer.echo(f"remstate: {message}", err=True)
        return Exit.INVALID
    except Exception as e:  # noqa: BLE001 - a bug of ours still gets one readable line
        typer.echo(f"remstate: unexpected error: {one_line(f'{type(e).__name__}: {e}')}", err=True)
        return Exit.ERROR
    return Exit.OK


def kubectl_main() -> int:
    """The ``kubectl-remstate`` entry point: ``kubectl remstate get 42`` runs this.

    The same commands, options and exit codes; the default store is the
    cluster of the kubeconfig's current context, in its namespace.
    """
    return main(plugin=True)
