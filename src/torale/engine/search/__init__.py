"""Web search providers behind one protocol, chosen by settings (and per task by `config`)."""
