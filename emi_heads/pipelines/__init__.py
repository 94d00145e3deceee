"""What drives both stages: `emi demo` (`demo`), `emi recipe` (`recipes`) and `emi predict
--media` (`media`), each running `emi` steps as subprocesses (`steps`), so that stage two's own
process never imports the backbone libraries."""
