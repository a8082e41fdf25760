namespace TxCoord.Recovery;

internal static class Usage
{
    public const string Text = """
        txcoord-recover: finds and finishes TxCoord's prepared transactions after a crash.

        usage: txcoord-recover <command> [options]

        commands:
          scan                  every prepared transaction in the participant databases: its age, what
                                the journal says, what it blocks, what resolve would do; then the commit
                                decisions whose branches are prepared nowhere any more. Changes nothing.
          resolve [--dry-run]   commit what the journal decided commit, roll back what it recorded
                                aborted and, when no coordinator with this id runs, what it never
                                decided (presumed abort, recorded in the journal first); leave the rest
                                (other coordinators' GIDs, 3PC PreCommits, a damaged journal).
                                Beside a live coordinator it only commits decided transactions.
                                --dry-run prints the plan and changes nothing.
          force commit|abort <gid> --reason <text> --yes-i-know [--even-if-live]
                                a heuristic decision on one GID, against or without the journal,
                                recorded in the journal (txcoord.heuristic_decisions) with who and when.
                                An abort the journal never decided is first recorded as its decision
                                (forced), so the other participants roll back too; while a coordinator
                                with this id runs (the transaction may be live there) only with
                                --even-if-live.
          verify                check the journal's integrity. Changes nothing.

        settings (each also from --config, appsettings.json beside the tool, or the environment,
        e.g. TxCoord__CoordinatorId; a participant id with '-' needs `env`, not `export`):
          --coordinator <id>          TxCoord:CoordinatorId: the coordinator whose GIDs to finish
          --journal <connection>      ConnectionStrings:Journal: the coordinator's journal database
          --participant <id>=<connection>
                                      TxCoord:Participants:<id>:ConnectionString (repeat per participant);
                                      connect as the role that prepared, or a superuser
          --config <file.json>        read the settings above from a JSON file
        a connection string with a password is refused as an argument (ps shows arguments to every
        user): give it in the environment, a --config file, or a password file (PGPASSFILE, ~/.pgpass).

        options:
          --json                      machine-readable output (scan, resolve, verify, force)
          --min-age <duration>        resolve: presume abort only when prepared longer than this (default 0s)
          --parallel <n>              resolve: COMMIT/ROLLBACK PREPARED at once per database (default 8)
          --lock-timeout <duration>   resolve: how long to wait while another resolve runs (default 60s)
          --progress / --no-progress  resolve: force the progress bar on or off (default: on a terminal)
          --operator <name>           force: who decides (default: user@host)
        durations: 90s, 5m, 2h or 00:05:00.

        exit codes:
          0  nothing of this coordinator is in doubt (verify: the journal is consistent)
          1  error: a database could not be reached or used, or an action failed (see stderr)
          2  bad usage or configuration
          3  prepared transactions of this coordinator remain in doubt
          4  verify: the journal has integrity problems
        """;
}
