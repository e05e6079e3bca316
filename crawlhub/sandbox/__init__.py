"""How a process of uploaded code is started: the worker's side of the privilege boundary."""
