# sbatch --parsable --hold --output=/data/runs/slurm/array-%A_%a.out '--comment=jobdb 0123456789abcdef node1:4242:1700000000.00'
#!/bin/bash
#SBATCH --job-name=jobdb-0123456789abcdef-p7
#SBATCH --array=0-39%5
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
# pull mode: each task runs the queued jobs recorded on this array (40 task(s)); JOBDB_URL comes from the submitter's environment
exec /opt/venv/bin/python -m jobdb worker --slurm-array --quiet --runs-dir /data/runs --heartbeat-interval 10
