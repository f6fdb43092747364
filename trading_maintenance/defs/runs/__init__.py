"""The run queue's own upkeep: runs a dying daemon left half-launched go back to the queue."""
