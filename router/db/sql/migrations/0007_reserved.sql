-- Reserved: migration 0007 is the schedules and rotations change, on its own
-- branch. This placeholder keeps the sequence whole until that branch is
-- merged; drop this file then (it changes nothing).
SELECT 1;
