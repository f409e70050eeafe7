"""Every private MXNet and Gluon name ptb_lm reads, in one place, each behind a function with a test.

They are safe because mxnet is pinned at 1.9.1, its last release; tests/test_runtime_internals.py
calls each of these on real MXNet objects, so that an MXNet whose internals differ fails
there, loudly, and not in the middle of a run. Nothing else in ptb_lm touches a name of
MXNet's that starts with an underscore.

    name read                                     by                       for
    rnn._reg_params                               rnn_kernel_params        the fused RNN kernel's parameters by name
    rnn._num_layers, _hidden_size, _dropout, _mode rnn_kernel_settings     calling the fused kernel directly
    Parameter._data, Parameter._grad              point_parameter_at       parameters as views into flat buffers
    Trainer._init_kvstore, Trainer._init_params   init_trainer_on_kvstore  rank 0's first weights on the servers
    KVStore._barrier                              kvstore_barrier          every worker waiting for the others
    Block._collect_params_with_prefix             saved_parameter_names    what save_parameters writes
    Trainer._updaters[k].states (and states_synced) trainer_states         an optimizer's state, to checkpoint
    Optimizer._index_update_count, num_update     optimizer_step_count     Adam's step count, to checkpoint
    HybridBlock._clear_cached_op                  forget_compiled_graph    a graph rebuilt with other outputs
"""


class InternalsChanged(RuntimeError):
    """The installed MXNet lacks a private name ptb_lm relies on: it is not mxnet 1.9.1."""


def _read(obj, name):
    try:
        return getattr(obj, name)
    except AttributeError:
        raise InternalsChanged("%s has no %s: ptb_lm reads this private name of mxnet 1.9.1, and this mxnet differs; "
                               "install mxnet==1.9.1" % (type(obj).__name__, name)) from None


def rnn_kernel_params(layer):
    """``{name: Parameter}`` of a Gluon RNN layer, keyed as its fused kernel call reads them
    (``l0_i2h_weight``, ..., ``l1_h2h_bias``)."""
    return _read(layer, "_reg_params")


def rnn_kernel_settings(layer):
    """What a Gluon RNN layer passes to the fused ``RNN`` operator besides its inputs."""
    return {"state_size": _read(layer, "_hidden_size"), "num_layers": _read(layer, "_num_layers"),
            "p": _read(layer, "_dropout"), "mode": _read(layer, "_mode")}


def point_parameter_at(param, index, data, grad):
    """Make ``param``'s copy number ``index`` (that of its ``index``-th context) the arrays ``data`` and ``grad``."""
    _read(param, "_data")[index] = data
    _read(param, "_grad")[index] = grad


def parameter_data(param, index):
    """``param``'s array on its ``index``-th context, without the checks of ``Parameter.data``."""
    return _read(param, "_data")[index]


def init_trainer_on_kvstore(trainer):
    """What a Gluon Trainer does lazily inside its first all-reduce: create its kvstore and put the
    first weights there (rank 0's), pulling them into every worker."""
    _read(trainer, "_init_kvstore")()
    _read(trainer, "_init_params")()


def kvstore_barrier(kv):
    """Wait until every worker of a dist_sync kvstore reaches this point."""
    _read(kv, "_barrier")()


def saved_parameter_names(block):
    """The names ``Block.save_parameters`` writes, one per parameter (tied ones once)."""
    return list(parameters_by_saved_name(block))


def parameters_by_saved_name(block):
    """``{name: Parameter}`` under the names ``Block.save_parameters`` writes: the blocks' attribute path
    (``rnn.l0_i2h_weight``), the same in every instance of a model, unlike ``Parameter.name``."""
    return dict(_read(block, "_collect_params_with_prefix")())


class _SyncedStates(dict):
    """An Updater's ``states``, which also marks each state set as in place on its context."""

    def __init__(self, updater):
        super(_SyncedStates, self).__init__(_read(updater, "states"))
        self._updater = updater

    def __setitem__(self, index, value):
        super(_SyncedStates, self).__setitem__(index, value)
        _read(self._updater, "states")[index] = value
        _read(self._updater, "states_synced")[index] = True


def trainer_states(trainer):
    """One ``{parameter index: state}`` per context of a Gluon Trainer (its updaters' states, created on the
    first update); setting an item puts it in place."""
    return [_SyncedStates(updater) for updater in _read(trainer, "_updaters")]


def optimizer_step_count(optimizer):
    """How many updates an optimizer has counted (the largest per-parameter count; 0 before any)."""
    counts = _read(optimizer, "_index_update_count")
    return max(counts.values()) if counts else 0


def set_optimizer_step_count(optimizer, indices, steps):
    """Make ``optimizer`` count ``steps`` updates for each parameter index of ``indices``."""
    counts = _read(optimizer, "_index_update_count")
    for index in indices:
        counts[index] = steps
    optimizer.num_update = max(_read(optimizer, "num_update"), steps)


def forget_compiled_graph(block):
    """Make a hybridized ``block`` build its graph again at the next call (its outputs changed)."""
    _read(block, "_clear_cached_op")()
