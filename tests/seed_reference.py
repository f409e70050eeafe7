"""The chapter's code (d2l-zh, "循环神经网络 — 使用Gluon"), kept as it was written (globals turned into arguments; one fix, marked),
so that tests can check that ptb_lm does the same math."""
import mxnet as mx
from mxnet import autograd, gluon
from mxnet.gluon import nn, rnn


class ChapterRNNModel(gluon.Block):
    def __init__(self, mode, vocab_size, embed_dim, hidden_dim, num_layers, dropout=0.5, **kwargs):
        super(ChapterRNNModel, self).__init__(**kwargs)
        with self.name_scope():
            self.drop = nn.Dropout(dropout)
            self.encoder = nn.Embedding(vocab_size, embed_dim, weight_initializer=mx.init.Uniform(0.1))
            if mode == 'rnn_relu':
                self.rnn = rnn.RNN(hidden_dim, num_layers, activation='relu', dropout=dropout, input_size=embed_dim)
            elif mode == 'rnn_tanh':
                # The chapter wrote no activation here, and Gluon's RNN defaults to ReLU, so the chapter's
                # 'rnn_tanh' trained a ReLU RNN. ptb_lm's rnn_tanh is tanh (README, "Differences").
                self.rnn = rnn.RNN(hidden_dim, num_layers, activation='tanh', dropout=dropout,
                                   input_size=embed_dim)
            elif mode == 'lstm':
                self.rnn = rnn.LSTM(hidden_dim, num_layers, dropout=dropout, input_size=embed_dim)
            elif mode == 'gru':
                self.rnn = rnn.GRU(hidden_dim, num_layers, dropout=dropout, input_size=embed_dim)
            self.decoder = nn.Dense(vocab_size, in_units=hidden_dim)
            self.hidden_dim = hidden_dim

    def forward(self, inputs, state):
        emb = self.drop(self.encoder(inputs))
        output, state = self.rnn(emb, state)
        output = self.drop(output)
        decoded = self.decoder(output.reshape((-1, self.hidden_dim)))
        return decoded, state

    def begin_state(self, *args, **kwargs):
        return self.rnn.begin_state(*args, **kwargs)


def get_batch(source, i, num_steps):
    """The chapter's get_batch, with its global num_steps as an argument."""
    seq_len = min(num_steps, source.shape[0] - 1 - i)
    data = source[i: i + seq_len]
    target = source[i + 1:i + 1 + seq_len]
    return data, target.reshape((-1,))


def chapter_train_losses(train_data, vocab_size, mode, embed_dim, hidden_dim, num_layers, lr, clipping_norm,
                      batch_size, num_steps, dropout_rate, max_batches, context=mx.cpu()):
    """The chapter's train() for one epoch, stopped after max_batches; returns each batch's summed loss."""
    model = ChapterRNNModel(mode, vocab_size, embed_dim, hidden_dim, num_layers, dropout_rate)
    model.collect_params().initialize(mx.init.Xavier(), ctx=context)
    trainer = gluon.Trainer(model.collect_params(), 'sgd', {'learning_rate': lr, 'momentum': 0, 'wd': 0})
    loss = gluon.loss.SoftmaxCrossEntropyLoss()

    def detach(state):
        if isinstance(state, (tuple, list)):
            state = [i.detach() for i in state]
        else:
            state = state.detach()
        return state

    losses = []
    hidden = model.begin_state(func=mx.nd.zeros, batch_size=batch_size, ctx=context)
    for ibatch, i in enumerate(range(0, train_data.shape[0] - 1, num_steps)):
        if ibatch >= max_batches:
            break
        data, target = get_batch(train_data, i, num_steps)
        hidden = detach(hidden)
        with autograd.record():
            output, hidden = model(data, hidden)
            L = loss(output, target)
            L.backward()
        grads = [i.grad(context) for i in model.collect_params().values()]
        gluon.utils.clip_global_norm(grads, clipping_norm * num_steps * batch_size)
        trainer.step(batch_size)
        losses.append(mx.nd.sum(L).asscalar())
    return losses


def chapter_model_eval(model, data_source, batch_size, num_steps, context=mx.cpu()):
    """The chapter's model_eval(), with its globals as arguments: mean loss per token over a batchified split."""
    loss = gluon.loss.SoftmaxCrossEntropyLoss()

    total_L = 0.0
    ntotal = 0
    hidden = model.begin_state(func=mx.nd.zeros, batch_size=batch_size, ctx=context)
    for i in range(0, data_source.shape[0] - 1, num_steps):
        data, target = get_batch(data_source, i, num_steps)
        output, hidden = model(data, hidden)
        L = loss(output, target)
        total_L += mx.nd.sum(L).asscalar()
        ntotal += L.size
    return total_L / ntotal
