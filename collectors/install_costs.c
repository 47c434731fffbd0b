/* The worker's choice between COPY and MOVE (see install_costs.h). */
#include "collectors/install_costs.h"

#include <string.h>

#define RETRY_FIRST 32u
#define RETRY_MAX 1024u

void install_costs_init(install_costs *c) {
  memset(c, 0, sizeof *c);
  c->interval = RETRY_FIRST;
  c->next_retry = RETRY_FIRST;
}

uint64_t install_cost_of(const install_costs *c, int move) {
  const uint64_t *v = c->last[move];
  if (c->samples[move] < 3) return v[0]; /* the first sample until there are three */
  uint64_t lo = v[0] < v[1] ? v[0] : v[1], hi = v[0] < v[1] ? v[1] : v[0];
  return v[2] < lo ? lo : v[2] > hi ? hi : v[2];
}

int install_choose_move(install_costs *c) {
  c->runs++;
  c->retrying = 0;
  if (c->samples[1] < 2) return 1;
  if (c->samples[0] < 2) return 0;
  int cheaper = install_cost_of(c, 1) <= install_cost_of(c, 0);
  if (c->runs < c->next_retry) return cheaper;
  c->retrying = 1;
  return !cheaper;
}

int install_wants_timing(const install_costs *c, int move) {
  return c->retrying || c->samples[move] < 3 || c->runs % INSTALL_SAMPLE_EVERY == 0;
}

/* A retry that did not run is judged on the next run instead: scored as it
 * was, every run whose staging found the releaser busy counted as a win for
 * MOVE and reset the interval (found in review). */
void install_record(install_costs *c, int chosen, int move, uint64_t ns_per_page) {
  c->last[move][c->samples[move] % 3] = ns_per_page;
  c->samples[move]++;
  if (c->retrying && move == chosen) {
    /* Lost again: wait twice as long before the next try. */
    int lost = install_cost_of(c, move) > install_cost_of(c, !move);
    c->interval = lost ? (c->interval * 2 < RETRY_MAX ? c->interval * 2 : RETRY_MAX)
                       : RETRY_FIRST;
    c->next_retry = c->runs + c->interval;
  }
}
