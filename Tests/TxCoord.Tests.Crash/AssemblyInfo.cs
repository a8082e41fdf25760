// The scenarios spend most of their time waiting (timeouts, re-drives, restarts), so a few run
// at once; the ones that restart a shared server are [NonParallelizable] and run alone.
[assembly: LevelOfParallelism(2)]
