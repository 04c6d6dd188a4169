"""The ``m_*`` console scripts (m_stats, m_generate, m_dump, m_replay, m_split).

Each has mflow's options (see each module), and the same conventions:

* Ctrl-C (SIGINT) or SIGTERM ends it cleanly: the message in hand is
  finished (a dump never has half a message), the summary is printed and
  the exit status is 0;
* bad input (an address that cannot be bound, a bad config, a missing
  folder) is one line on stderr, ``m_x: error: ...``, exit status 1
  (usage errors: argparse's, status 2); never a traceback;
* progress lines that rewrite themselves (``\\r``) only when stdout is a
  terminal.

The tools use plain pyzmq (they are programs of their own, not greenlets).
"""
