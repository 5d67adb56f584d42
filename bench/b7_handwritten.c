/* B7, the "fastest autograd" workload, written by hand in C: the published "hand-written C
 * 0.99 s" baseline, remeasured on the machine at hand, since the B7 target is stated for "this machine".
 *
 * The graph's structure is the code (no interpreter, no operand lists); forward keeps what
 * backward needs, backward applies the chain rule op by op in reverse, with fastgrad's
 * formulas (d log(a) = 1/a; d(a/b) = 1/b and -a/(b*b)) and no contraction into FMA.
 *
 *     gcc -O2 -ffp-contract=off bench/b7_handwritten.c -o /tmp/b7 -lm && /tmp/b7
 *
 * With -DB7_LIBRARY -shared -fPIC it is a library whose b7_iteration() runs one forward and
 * backward, as `python -m fastgrad bench` builds and times it beside the tape.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#define OPS 10000
#define N (100 + OPS / 4 * 7) /* leaves, then per 4 ops: softplus, sum, product, 4 softmax */
static double v[N], g[N], ex[OPS / 4 * 5], ssum[OPS / 4];
/* One forward and backward from the leaves i / 100; returns the leaves' grads summed, which
 * callers compare with the tape's to know the same work was done. */
double b7_iteration(void){
  int len = 0, e = 0, s = 0;
  double leaf_grads = 0.0;
  for (int i = 0; i < 100; i++) v[len++] = i / 100.0;
  for (int op = 0; op < OPS; op++) {
    switch (op % 4) {
    case 0: { double t = exp(v[len - 10]); ex[e++] = t; v[len] = log(1.0 + t); len++; break; }
    case 1: v[len] = ((0.0 + v[len - 30]) + v[len - 25]) + v[len - 20] + v[len - 15]; len++; break;
    case 2: v[len] = v[len - 20] * v[len - 10]; len++; break;
    default: {
      double t0 = exp(v[len - 4]), t1 = exp(v[len - 3]), t2 = exp(v[len - 2]), t3 = exp(v[len - 1]);
      double sm = (((0.0 + t0) + t1) + t2) + t3;
      ex[e++] = t0; ex[e++] = t1; ex[e++] = t2; ex[e++] = t3; ssum[s++] = sm;
      v[len] = t0 / sm; v[len + 1] = t1 / sm; v[len + 2] = t2 / sm; v[len + 3] = t3 / sm; len += 4;
    } }
  }
  memset(g, 0, sizeof g); g[len - 1] = 1.0;
  for (int op = OPS; op-- > 0;) {
    switch (op % 4) {
    case 0: { double t = ex[--e]; len--; double d = g[len] * (1.0 / (1.0 + t)); g[len - 10] += d * t; break; }
    case 1: len--; g[len - 30] += g[len]; g[len - 25] += g[len]; g[len - 20] += g[len]; g[len - 15] += g[len]; break;
    case 2: len--; g[len - 20] += g[len] * v[len - 10]; g[len - 10] += g[len] * v[len - 20]; break;
    default: {
      double sm = ssum[--s], gs = 0; len -= 4; e -= 4;
      double gt[4];
      for (int j = 3; j >= 0; j--) { gt[j] = g[len + j] * (1.0 / sm); gs += g[len + j] * (-ex[e + j] / (sm * sm)); }
      for (int j = 0; j < 4; j++) g[len - 4 + j] += (gt[j] + gs) * ex[e + j];
    } }
  }
  for (int i = 0; i < 100; i++) leaf_grads += g[i];
  return leaf_grads;
}

#ifndef B7_LIBRARY
static double now(void){ struct timespec t; clock_gettime(CLOCK_MONOTONIC,&t); return t.tv_sec + t.tv_nsec*1e-9; }

int main(void){
  int iters = 2000; double t0 = now(), checksum = 0;
  for (int it = 0; it < iters; it++) b7_iteration();
  double t = (now() - t0) / iters;
  for (int i = 0; i < N; i++) checksum += fabs(g[i]); /* keeps the work observable */
  printf("hand-written C: %.1f us per iteration, %.2f s for 10^4 (sum of |grad| %g)\n", t * 1e6, t * 1e4, checksum);
  return 0;
}
#endif
