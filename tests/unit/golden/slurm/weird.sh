# sbatch --parsable --hold '--output=/data/my runs/it'"'"'s "$HOME"; echo pwned
line2 %%j/slurm/job-3-1-%j.out' '--comment=jobdb 0123456789abcdef node1:4242:1700000000.00'
#!/bin/bash
#SBATCH --job-name=jobdb-0123456789abcdef-3-1
#SBATCH --time=5
#SBATCH --signal=B:USR1@60
#SBATCH --no-requeue
# jobdb job 3, attempt 1; JOBDB_URL comes from the submitter's environment
exec /opt/venv/bin/python -m jobdb run 3 --attempt 1 --runs-dir '/data/my runs/it'"'"'s "$HOME"; echo pwned
line2 %j' --heartbeat-interval 10
