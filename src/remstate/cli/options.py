"""The global options (``-o``, ``-s``, ``-n``, ``--kubeconfig``, ``--context``,
``--max-iterations``, ``--timeout``), anywhere; and which store a command opens.

Design constraint: a workflow author writes ``remstate increment 42 -o json``,
an operator ``remstate -o json get 42``; both must work without rewriting
argv. So the options are ordinary typer options at every level, built from
one table: on the root group (with their environment variables and defaults),
and on every subgroup (``group_callback``) and command (``global_options``),
where they default to "not given here". Click parses each level itself, so a
subcommand option's value (``--note -o``) and ``--`` keep their usual
meaning. A value given after the command wins over one given before it, and
over the environment.

Which store (documented in ``remstate.cli``): ``--store`` (or REMSTATE_STORE)
when given; else Kubernetes when ``--kubeconfig``, ``--context`` or
``--namespace`` is given (or their REMSTATE_ variables), or when the command
runs as the kubectl plugin ``kubectl-remstate``; else the embedded file. A
KUBECONFIG variable alone does not switch to Kubernetes: a developer whose
shell has one keeps the embedded default, as before.
"""

from __future__ import annotations

import dataclasses
import enum
import inspect
import json
import os
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Annotated, Any, Concatenate, ParamSpec

import typer

from remstate.errors import InvalidInput, StoreError, Unavailable
from remstate.manager import StateManager
from remstate.retry import RetryPolicy
from remstate.store import Store, StoreURL, open_store, parse_store_url

__all__ = [
    "DEFAULT_DB",
    "READ_TIMEOUT",
    "WRITE_TIMEOUT",
    "GlobalOptions",
    "Output",
    "Session",
    "global_option_parameters",
    "global_options",
    "global_options_but",
    "group_callback",
]

P = ParamSpec("P")

DEFAULT_DB = (
    Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")
    / "remstate"
    / "state.db"
)

#: Seconds a read, and a write, goes on retrying an unavailable store by default.
#: A read is an operator or a step looking; a write is worth waiting out a restart.
READ_TIMEOUT = 10.0
WRITE_TIMEOUT = 30.0

_PANEL = "Global options (before or after the command)"


class Output(enum.StrEnum):
    text = "text"
    json = "json"


def _options(*, group: bool) -> dict[str, tuple[type, Any]]:
    """Each global option: its parameter name, type and typer declaration.

    On the group they read their environment variable and show their default;
    elsewhere they default to None, meaning "not given here".
    """

    def env(name: str) -> str | None:
        return name if group else None

    return {
        "store": (
            str,
            typer.Option(
                "--store",
                "-s",
                help="sqlite:///path/state.db (?mode=ro: read-only) or kubernetes://NAMESPACE "
                "(env REMSTATE_STORE); default: Kubernetes if -n, --kubeconfig or --context "
                "is given or run as kubectl remstate, else the embedded file in your data dir",
                show_default=False,
                rich_help_panel=_PANEL,
            ),
        ),
        "namespace": (
            str,
            typer.Option(
                "--namespace",
                "-n",
                envvar=env("REMSTATE_NAMESPACE"),
                help="the namespace (Kubernetes; or inside the embedded file); default: "
                "the store URL's, else the kubeconfig context's, else default",
                show_default=False,
                rich_help_panel=_PANEL,
            ),
        ),
        "kubeconfig": (
            str,
            typer.Option(
                "--kubeconfig",
                envvar=env("REMSTATE_KUBECONFIG"),
                metavar="FILE",
                help="the kubeconfig to use; default: KUBECONFIG, else ~/.kube/config, "
                "else the pod's service account",
                show_default=False,
                rich_help_panel=_PANEL,
            ),
        ),
        "context": (
            str,
            typer.Option(
                "--context",
                envvar=env("REMSTATE_CONTEXT"),
                help="the kubeconfig context to use; default: its current context",
                show_default=False,
                rich_help_panel=_PANEL,
            ),
        ),
        "output": (
            Output,
            typer.Option("--output", "-o", help="text or json", rich_help_panel=_PANEL),
        ),
        "max_iterations": (
            int,
            typer.Option(
                "--max-iterations",
                envvar=env("REMSTATE_MAX_ITERATIONS"),
                min=1,
                help="iteration limit",
                show_default=group,
                rich_help_panel=_PANEL,
            ),
        ),
        "timeout": (
            float,
            typer.Option(
                "--timeout",
                envvar=env("REMSTATE_TIMEOUT"),
                min=0.001,
                metavar="SECONDS",
                help="give up on an unavailable store after this long "
                f"(default: {READ_TIMEOUT:g} for reads, {WRITE_TIMEOUT:g} for writes)",
                show_default=False,
                rich_help_panel=_PANEL,
            ),
        ),
    }


@dataclasses.dataclass(frozen=True, slots=True)
class GlobalOptions:
    """The global options as given: ``store`` None means REMSTATE_STORE, else the default.

    ``plugin``: the command runs as ``kubectl-remstate`` (not an option: set by
    its entry point), so Kubernetes is the default store.
    """

    store: str | None = None
    namespace: str | None = None
    kubeconfig: str | None = None
    context: str | None = None
    output: Output = Output.text
    max_iterations: int = 10
    timeout: float | None = None
    plugin: bool = False

    def overlaid(self, given: dict[str, Any]) -> GlobalOptions:
        """These options, with those given at a later level (not None) winning."""
        return dataclasses.replace(self, **{k: v for k, v in given.items() if v is not None})


def global_option_parameters(*, group: bool) -> list[inspect.Parameter]:
    """The global options as keyword parameters, for typer to read from a signature."""
    defaults = GlobalOptions()
    return [
        inspect.Parameter(
            name,
            inspect.Parameter.KEYWORD_ONLY,
            default=getattr(defaults, name) if group else None,
            annotation=Annotated[kind | None, option],
        )
        for name, (kind, option) in _options(group=group).items()
    ]


def _store_url(options: GlobalOptions) -> str:
    """The store to use: ``--store``, else REMSTATE_STORE; else Kubernetes when a
    kubeconfig, context or namespace is given or this is the kubectl plugin; else
    the default file.

    Raises:
        InvalidInput: the one given is empty (a template with an unset
            variable, say): the default file is no stand-in for it.
    """
    for name, value in (
        ("--namespace", options.namespace),
        ("--kubeconfig", options.kubeconfig),
        ("--context", options.context),
    ):
        if value is not None and not value.strip():
            raise InvalidInput(f"{name} is empty; give one, or leave the option out")
    if options.store is not None:
        if not options.store.strip():
            raise InvalidInput("--store is empty; give a store URL, or leave the option out")
        return options.store
    env = os.environ.get("REMSTATE_STORE")
    if env is not None:
        if not env.strip():
            raise InvalidInput("REMSTATE_STORE is empty; give a store URL, or unset it")
        return env
    kubernetes = (options.namespace, options.kubeconfig, options.context)
    if options.plugin or any(v is not None for v in kubernetes):
        return "kubernetes://"
    return f"sqlite://{DEFAULT_DB}"


class Session:
    """What a command runs with: the store, the output format and the limits."""

    def __init__(self, options: GlobalOptions) -> None:
        self.store_url = _store_url(options)
        self.namespace = options.namespace
        self.kubeconfig = options.kubeconfig
        self.context = options.context
        self.output = options.output
        self.max_iterations = options.max_iterations
        self.timeout = options.timeout

    @contextmanager
    def manager(self, mode: str) -> Iterator[StateManager]:
        """The manager on the store, opened in ``mode`` (for the embedded store).

        Its retries give up after the command's timeout: a read (``ro``) sooner.
        """
        deadline = self.timeout or (READ_TIMEOUT if mode == "ro" else WRITE_TIMEOUT)
        target = parse_store_url(self.store_url)
        if mode == "rwc" and target.backend == "sqlite" and target.mode == "rwc":
            path = Path(target.path)
            # A directory we cannot make is left for the store to report when it
            # opens the file: one translated line and a documented code, not an
            # OSError traceback.
            with suppress(OSError):
                path.parent.mkdir(parents=True, exist_ok=True)
        try:
            store = self._open(target, mode)
        except StoreError as e:
            if type(e) is not StoreError:
                raise
            # Nothing was sent yet: a store that cannot be opened for a reason
            # its backend did not classify (no Kubernetes configuration, say)
            # is unavailable to this command (exit 6), not a bug of ours (1).
            raise Unavailable(str(e)) from e
        try:
            if target.backend == "kubernetes":
                # The namespace the opener chose (the context's, say), for output.
                self.store_url = f"kubernetes://{store.namespace}"
            yield StateManager(
                store, max_iterations=self.max_iterations, retry=RetryPolicy(deadline=deadline)
            )
        finally:
            store.close()

    def _open(self, target: StoreURL, mode: str) -> Store:
        """Open the store: the kubeconfig and context apply to Kubernetes only."""
        if target.backend == "sqlite":
            return open_store(self.store_url, namespace=self.namespace, mode=mode)
        return open_store(
            self.store_url,
            namespace=self.namespace,
            kubeconfig=self.kubeconfig,
            context=self.context,
        )

    def emit(self, value: Any, text: Callable[[], str]) -> None:
        if self.output is Output.json:
            typer.echo(json.dumps(value, ensure_ascii=False, indent=2))
        else:
            typer.echo(text())


def _given_here(ctx: typer.Context, given: dict[str, Any]) -> GlobalOptions:
    # A group's callback runs before its command is parsed and leaves its
    # options in ctx.obj; click hands a parent's obj to each child context.
    inherited = ctx.obj if isinstance(ctx.obj, GlobalOptions) else GlobalOptions()
    return inherited.overlaid(given)


def _typer_callable(
    body: Callable[..., None],
    like: Callable[..., Any],
    own: list[inspect.Parameter],
    *,
    group: bool,
    claimed: Collection[str] = (),
) -> Callable[..., None]:
    """``body`` under ``like``'s name and docs, with the signature typer will read.

    Typer builds a command's options from ``inspect.signature``, which honours
    ``__signature__``: the documented way to give a callable a signature it
    was not defined with, so no typer or click internals are touched.
    ``claimed``: global options the command declares itself, left out here.
    """
    extra = [p for p in global_option_parameters(group=group) if p.name not in claimed]
    if clash := {p.name for p in own} & {"ctx", *(p.name for p in extra)}:
        raise TypeError(f"{like.__name__}: parameters {sorted(clash)} shadow global options")
    ctx = inspect.Parameter(
        "ctx", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=typer.Context
    )
    parameters = [ctx, *own, *extra]
    body.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]
    body.__annotations__ = {p.name: p.annotation for p in parameters}
    for attribute in ("__module__", "__name__", "__qualname__", "__doc__"):
        setattr(body, attribute, getattr(like, attribute))
    return body


_NAMES = tuple(_options(group=False))


def global_options(function: Callable[Concatenate[Session, P], None]) -> Callable[..., None]:
    """Declare the global options on a command too; it is called with a ``Session``.

    The command's own parameters, after the first, stay as they are, and the
    options are ordinary typer options of the command, shown in its help.
    """
    return _with_global_options(function, claimed=())


def global_options_but(
    *claimed: str,
) -> Callable[[Callable[Concatenate[Session, P], None]], Callable[..., None]]:
    """As :func:`global_options`, but the command declares the ``claimed`` ones itself.

    For a command whose own option has a global option's name: ``remstate
    policy 42 --max-iterations 20`` stores a limit. Given before the command,
    such an option is still the global one.
    """
    if unknown := set(claimed) - set(_NAMES):
        raise TypeError(f"not global options: {sorted(unknown)}")

    def decorate(function: Callable[Concatenate[Session, P], None]) -> Callable[..., None]:
        return _with_global_options(function, claimed=claimed)

    return decorate


def _with_global_options(
    function: Callable[Concatenate[Session, P], None], *, claimed: Collection[str]
) -> Callable[..., None]:
    own = list(inspect.signature(function, eval_str=True).parameters.values())[1:]
    names = [name for name in _NAMES if name not in claimed]

    def command(ctx: typer.Context, **kwargs: Any) -> None:
        options = _given_here(ctx, {name: kwargs.pop(name) for name in names})
        function(Session(options), **kwargs)  # type: ignore[call-arg]  # kwargs are P.kwargs

    return _typer_callable(command, function, own, group=False, claimed=claimed)


def group_callback(function: Callable[[], None], *, root: bool) -> Callable[..., None]:
    """A group's callback that takes the global options given at its level.

    The root reads their environment variables and defaults; a subgroup
    (``feedback -o json list``) only what is typed there.
    """

    def callback(ctx: typer.Context, **given: Any) -> None:
        ctx.obj = _given_here(ctx, given)

    return _typer_callable(callback, function, [], group=root)
