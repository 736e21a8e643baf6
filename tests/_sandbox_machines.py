"""Source text of the stateful machine two sandbox suites share (pytester writes it into a
suite module): a writer putting one key, and no nemesis rule, so only the failover pass a
cluster row owes strikes. The module that uses it imports ``rule``, ``FaultMachine`` and
``StatefulRun`` and adds the class's ``check``."""

WRITES_MACHINE = """
    class Writes(FaultMachine):
        # no nemesis rule: plain methods hide the inherited ones from Hypothesis
        def kill_and_restart(self): ...
        def pause(self): ...
        def resume(self): ...
        def latency(self): ...
        def reset_connections(self): ...
        def partition(self): ...
        def heal(self): ...

        def __init__(self, run):
            super().__init__(run, ["backend"])
            self.key = self.ns.name("k")
            self.value = 0

        @rule()
        def put(self):
            self.value += 1
            value = self.value
            put = lambda: self.client("backend").keyvalue().put(self.key, str(value).encode())
            done = self.attempt("writer", "put", put, key=self.key, value=value)
            if done.completed:
                done.handle.ok()
"""
