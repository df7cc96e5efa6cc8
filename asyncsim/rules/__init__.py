"""The rules every executor carries out, written once and without a clock.

The simulator (`asyncsim.sim`) and the real runner (`asyncsim.real`) execute the same rules: each passes the
time in (model seconds) and carries out the commands the rules yield on its own clock. Model modules
(`spec`, `services`, `policies`) hold data only; what the data means at run time lives here:

* `calls` — one call and its attempts (limiter, server rate limit, outcome, service, back-off);
* `limits` — token buckets and a policy-ordered client limiter;
* `queues` — tickets, policy-ordered wait queues, a server in virtual time, a dynamic batcher;
* `pipeline` — a pipeline's batch draws, each item's route, and its ticket.
* `timers` — how long a timed wait lasts on a machine's timers (a thread's sleep, the loop's select()).
"""
