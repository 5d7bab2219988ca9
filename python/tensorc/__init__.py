"""tensorc: Tensor Comprehensions compiled to C kernels, called from Python
and registered as PyTorch operators.

    import tensorc
    ops = tensorc.define('''
    def matmul(float(M,K) A, float(K,N) B) -> (C) {
        C(m,n) +=! A(m,k) * B(k,n)
    }
    ''')
    C = ops.matmul(A, B)            # torch tensors or numpy arrays, any strides

Sources are parsed and checked by define() (a tensorc.Error, located, when
they are wrong); each def's kernel is compiled on its first call and serves
every shape.  Scalars passed by keyword are compile-time constants; with
PyTorch, every def is also an operator torch.ops.tensorc.* with a fake
implementation (torch.compile, dynamic shapes) and a derived backward.
docs/python.md has the whole story.
"""
from ._C import VERSION as __version__
from ._C import Error
from ._api import Definition, Op, context, define, set_context, stats

__all__ = ["Definition", "Error", "Op", "context", "define", "set_context", "stats"]
