# sbatch --parsable --hold --output=/data/runs/slurm/job-42-2-%j.out '--comment=jobdb 0123456789abcdef node1:4242:1700000000.00'
#!/bin/bash
#SBATCH --job-name=jobdb-0123456789abcdef-42-2
#SBATCH --partition=debug
#SBATCH --account=speech
#SBATCH --qos=normal
#SBATCH --cpus-per-task=8
#SBATCH --mem=16G
#SBATCH --time=1-00:00:00
#SBATCH --constraint="a100|h100 & ib"
#SBATCH --gres=gpu:2
#SBATCH --signal=B:USR1@60
#SBATCH --no-requeue
#SBATCH --exclusive
#SBATCH --nice=10
# jobdb job 42, attempt 2; JOBDB_URL comes from the submitter's environment
exec /opt/venv/bin/python -m jobdb run 42 --attempt 2 --runs-dir /data/runs --heartbeat-interval 10
