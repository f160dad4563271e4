# sbatch --parsable --hold --output=/data/runs/slurm/job-9-1-%j.out '--comment=jobdb 0123456789abcdef node1:4242:1700000000.00'
#!/bin/bash
#SBATCH --job-name=jobdb-0123456789abcdef-9-1
#SBATCH --no-requeue
#SBATCH --dependency=afterok:101:7
#SBATCH --kill-on-invalid-dep=yes
# jobdb job 9, attempt 1; JOBDB_URL comes from the submitter's environment
exec /opt/venv/bin/python -m jobdb run 9 --attempt 1 --runs-dir /data/runs --heartbeat-interval 10
