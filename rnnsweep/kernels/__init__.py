"""Fused sequence kernels for every cell: whole-sequence forward, hand-derived backward.

:func:`fused_layer_forward` is a drop-in for ``cell.layer_forward`` (the per-step
autograd reference of :mod:`rnnsweep.cells`) and :func:`fused_forward` for
``PackedRNN.forward``. Each cell is one :class:`~rnnsweep.kernels._base.SequenceKernel`
run through a single ``torch.autograd.Function``; no per-step autograd graph is built.

Work per layer (K members, T steps, batch B, width H, G gate blocks, input width I)::

    forward   A = x W^x + b + b_fg             1 product   (K, T*B, I) @ (K, I, G*H)
              per step: a_t += h_{t-1} W^h      T products  (K, B, H) @ (K, H, G*H)
                        gates, state update     a few in-place pointwise ops
    backward  F = local derivatives             a few bulk pointwise passes per chunk
                                                of steps (all T on GPUs, ~1 MiB on CPUs)
              per step: dp_t = F_t * dh_t       a few in-place pointwise ops
                        dh_{t-1} += dp_t W^h^T  T products  (K, B, G*H) @ (K, G*H, H)
              dW^h = H_prev^T dP                1 product   (K, H, T*B) @ (K, T*B, G*H)
              dW^x = X^T dP, dx = dP W^x^T      1 product each; db = sum of dP rows
              ds0 = gradient reaching h_{-1}, summed over the batch

The Collins GRU splits the recurrent product in two ([r, u], then ``(r h) W^{ch}``)
in both directions; both GRUs form ``dW^h`` as two products (the [r, u] and the c
columns); the minimalRNN's ``z`` path adds two products before the loop and two
after it; the +RNN's layer-0 input projection is one autograd-tracked product.

Layout. Big buffers are K-major, ``(K, T, B, .)``, the layout of the layer's input
and output, so the products over all ``T*B`` rows (input projection, weight
gradients, ``dx``) use them without copies, and a step's slice ``[:, t]`` is K
dense ``(B, .)`` blocks that batched GEMM reads through a batch stride. The
exception is where a per-step product *writes*: torch's CPU ``baddbmm`` into a
strided destination falls back to one ``addmm`` per member (measured 2x slower per
step at K = 32). So the forward writes each step's pre-activations into a dense
``(K, B, G*H)`` scratch (the pointwise ops then write the activations into ``A``
with ``out=``, at no extra pass), and the backward keeps ``dL/dh`` time-major,
``(T+1, K, B, H)``, so ``dh_{t-1} += dp_t W^h^T`` lands in a dense block (the
transposing copy of the output gradient into it replaces a copy needed anyway;
torch's GRU keeps its ``n`` time-major for the same reason). A fully time-major
layout would make every slice dense but cost transposing copies of ``A`` and ``F``
around the all-rows products.

Saved for backward, per layer, in elements (besides the layer input ``x``, which the
layer below or the caller holds anyway; ``N = K*T*B*H``; the h buffer ``Hs`` has one
extra row for ``h_{-1}`` and *is* the layer output, shared with the layer above)::

    rnn, irnn    Hs                                  1 N  (s'(a) is read off h)
    ugrnn        A = [c, g], Hs                      3 N
    gru (pre)    A = [r, u, c], Hs                   4 N  (r h rebuilt in bulk)
    gru (post)   A = [r, u, c], n, Hs                5 N
    lstm         A = [i, f, o, g], c, Hs             6 N  (tanh(c) recomputed backwards)
    plusrnn      A = [y_in, h_in, g_y, g_h], Hs      5 N  (+ the projected input, layer 0)
    minimalrnn   u, z, Hs                            3 N

so the total is proportional to ``K * depth * T * B * H``. Backward adds transient
buffers for one layer at a time: ``F`` (``G*N``; the native loop: one 256-row pass per
member, below), ``dH`` (``N``; LSTM: ``dc`` factors, another ``N``; torch's GRU: ``dn``,
another ``N``) and the small temporaries of one chunk of derivative passes. Saved
tensors are never modified, so a second backward with ``retain_graph=True`` works;
double backward (``create_graph=True``) is not implemented and raises.

Two time loops. On the CPU, for float32 and float64, the per-step part of both
directions runs as one C call per layer (:mod:`rnnsweep.kernels._native`,
``native/layers.c``): per member and step one small GEMM (float32: the package's own
AVX-512 kernel, ``native/gemm.h``, where the CPU has AVX-512; else torch's BLAS),
then one fused pass of the gate math while the step's rows are in cache, members
spread over ``torch.get_num_threads()`` OpenMP threads; each member's input
projection is formed inside its loop a pass of 256 rows at a time, right before the
steps that read it, and the input bias added per step. Without autograd (an
evaluation) nothing is saved for a backward, so ``A`` is a ring of one such pass per
member instead of all T steps (bit-identical outputs; ``tests/test_native.py``).

One deliberate departure from the table above in the native backward: ``dW^h``,
``dW^x``, ``dx`` and ``db`` are not single products over all ``T*B`` rows after the
loop but the same products over passes of 256 rows (8 steps at B = 32), formed inside
the loop right after those steps, while their rows of ``F``, ``h`` and ``x`` are in
cache. Still no per-step weight-gradient product, and a pass's products have a long
inner dimension; but the rows are not read back from memory, and ``F`` need only hold
one pass per member (a ring). Measured: 167 -> 118 ms per ugrnn pack step of 32 (one
thread), docs/PERFORMANCE.md. The +RNN and the minimalRNN, whose remaining gradients
read all of ``F`` after the loop, keep the full ``F``.

The native loops are compiled on first use and cached; without a C compiler, on CUDA,
for other dtypes, or with ``RNNSWEEP_NATIVE=0``, the loop below runs as torch ops, step
by step, with the single all-rows products. Both loops share every saved tensor and
layout, and the tests run each against the reference. With ``RNNSWEEP_COMPILE=1`` each
step of the torch-op loop is one ``torch.compile`` graph instead (the pointwise fusion
meant for CUDA, :mod:`rnnsweep.kernels._compiled`; each cell states its step a second
time for it, as pure tensor math, ``step_t``/``back_step_t``).

Devices and dtypes: torch ops in float32 and float64 on CPU and CUDA, the native
loop on the CPU. tanh is evaluated as ``2 sigmoid(2a) - 1`` on the CPU (see
:func:`~rnnsweep.kernels._base.act`; the native loop's float32 exp is a vectorised
polynomial within 3e-7 of NumPy for tanh and sigmoid).
Members never mix: every product is batched over K and every reduction is over
rows of one member, so a NaN in one member stays there.
"""

from __future__ import annotations

from rnnsweep.kernels.fused import fused_forward, fused_layer_forward, kernel_for

__all__ = ["fused_forward", "fused_layer_forward", "kernel_for"]
