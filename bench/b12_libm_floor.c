/* B12's floor: the transcendental calls a tape run of one expression tree makes, and nothing
 * else, in a plain C loop over the rows. `python -m fastgrad bench` builds it as a library
 * and passes, per tree, the functions called and the arguments they are called with (each
 * op's forward call; a sin or cos whose derivative is wanted takes sin(a) and cos(a) side by
 * side, which the compiler makes one sincos call, as it does in fastgrad's tape), so its
 * time is what the libm calls alone cost: what no engine computing the same tree can go
 * below.
 */
#include <math.h>

enum { CALL_SIN, CALL_COS, CALL_EXP, CALL_TANH, CALL_SIN_AND_COS };

/* Calls which[c] on args[c][0..rows) for each call c; returns the results summed so that
 * none can be left out. */
double b12_calls(int calls, const int *which, const double *const *args, int rows) {
  double sink = 0.0;
  for (int c = 0; c < calls; c++) {
    const double *a = args[c];
    switch (which[c]) {
    case CALL_SIN: for (int r = 0; r < rows; r++) sink += sin(a[r]); break;
    case CALL_COS: for (int r = 0; r < rows; r++) sink += cos(a[r]); break;
    case CALL_EXP: for (int r = 0; r < rows; r++) sink += exp(a[r]); break;
    case CALL_TANH: for (int r = 0; r < rows; r++) sink += tanh(a[r]); break;
    case CALL_SIN_AND_COS: for (int r = 0; r < rows; r++) sink += sin(a[r]) + cos(a[r]); break;
    }
  }
  return sink;
}
